"""Helpers the tests share: hand-built trials and records (factories), study files and
real runs (studies), the CLI in a child process (cli), small disks (disk), and a fake
autoscaling cluster (fake_cluster). Fixtures stay in tests/conftest.py."""
