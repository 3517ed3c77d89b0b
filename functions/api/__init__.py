"""The Batch AI 2018-05-01 routes, one router per resource family."""
