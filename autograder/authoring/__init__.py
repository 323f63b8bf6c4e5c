"""From a hidden master notebook to the student notebook, the grader's material and sample submissions."""
