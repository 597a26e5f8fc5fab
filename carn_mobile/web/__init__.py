"""The web target: the page, its site folder, a local server and the headless-browser driver."""
