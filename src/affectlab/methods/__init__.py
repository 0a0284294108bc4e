"""Training recipes. A method owns its networks and turns a batch into named loss terms."""
