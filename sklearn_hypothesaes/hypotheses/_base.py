"""The base of the strategy objects (describers and annotators)."""

from sklearn.base import BaseEstimator


class Strategy(BaseEstimator):
    """Parameters only: cloneable and searchable like an estimator, never fitted.

    Describers and annotators subclass it for ``get_params``/``set_params``,
    so that ``GridSearchCV`` can reach ``hypotheses__describer__n_terms``; their
    tags say ``requires_fit=False``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
