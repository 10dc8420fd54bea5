"""Regenerate models/facts.json from real builds after a zoo change:

    python -m models.write_facts
"""
import time

from models.facts import FACTS_FILE, write_facts_file

if __name__ == "__main__":
    begin = time.perf_counter()
    count = write_facts_file()
    print(f"wrote {count} entries to {FACTS_FILE} in {time.perf_counter() - begin:.0f} s")
