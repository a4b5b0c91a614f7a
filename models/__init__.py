"""The coder itself: catalogue, scorers, decision rule, artifacts. Imports nothing else of ours."""
