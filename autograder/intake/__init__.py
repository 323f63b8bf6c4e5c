"""Reading submissions: single notebooks, folders of them, class zips; validated, never trusted."""
