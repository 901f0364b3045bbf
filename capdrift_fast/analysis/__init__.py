"""Analysis of scores: the drift matrix and drift score (:mod:`.drift`) and their statistics (:mod:`.stats`)."""
