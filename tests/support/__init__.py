"""Helpers the tests share: hand-built trials and records (factories), study files and
real runs (studies), the CLI in a child process (cli), small disks (disk), a test's own
Ray on loopback (loopback) and a fake autoscaling cluster on it (fake_cluster). Fixtures
stay in tests/conftest.py."""
