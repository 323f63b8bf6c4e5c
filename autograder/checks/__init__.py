"""Running Otter-format tests on the grader's side of the wall, and scoring them."""
