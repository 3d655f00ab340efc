"""Text signals beyond the embedding: per-post scorers and the feature families built on them.

* :mod:`~wsb_gpu.signals.vader` and :mod:`~wsb_gpu.signals.words` score a post on its own
  (the ``signals`` stage stores the result per post);
* :mod:`~wsb_gpu.signals.base` is the family contract (a plain family, a fitted family, the
  posts and labels a fitted family reads);
* :mod:`~wsb_gpu.signals.families` holds the registry of every family of stock-day columns
  (attention, embedding, FinBERT sentiment, VADER, topics, lexicon, TF-IDF) and the feature
  sets the training stage compares;
* :mod:`~wsb_gpu.signals.lexicon`, :mod:`~wsb_gpu.signals.tfidf` and
  :mod:`~wsb_gpu.signals.topics` are the families fitted on data, always inside one
  rolling training window, and :mod:`~wsb_gpu.signals.fitted` fits and scores them for a
  window (see docs/signals.md).

Nothing here reads the settings: a fitted family gets its own section of ``train`` from the
training task (:mod:`wsb_gpu.training.families`).
"""
