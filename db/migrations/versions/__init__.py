"""One file per schema revision, oldest first: 0001_initial, 0002_review_queue_indexes."""
