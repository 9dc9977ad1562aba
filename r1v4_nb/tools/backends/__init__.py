"""Search backends behind the tools: the offline corpus and image index, and the online services."""
