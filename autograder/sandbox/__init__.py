"""Running untrusted code under limits: no network, no view of the grader's files, bounded resources."""
