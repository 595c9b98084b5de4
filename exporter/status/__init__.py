"""The public status page (issue 11): what it shows (`view`) and how it is drawn (`page`)."""
