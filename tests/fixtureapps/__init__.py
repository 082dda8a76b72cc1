"""Small fake servers that the tests start in a thread and point the app at."""
