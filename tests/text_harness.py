"""Texts from numbers, so that text-input estimators run scikit-learn's checks.

``parametrize_with_checks`` feeds numeric matrices. A test-only subclass of a
text estimator declares numeric input, validates X as scikit-learn expects
(``n_features_in_``, NaN, sparse, dtypes) and passes :func:`rows_to_texts` of it
to the real estimator. Equal rows give equal texts; rows that differ in any
value at 3 significant digits give different texts.
"""

import numpy as np

#: One syllable per decimal digit; a value's sign and exponent are words too.
DIGITS = ("ka", "lo", "mi", "nu", "po", "ra", "si", "tu", "ve", "zo")


def value_to_word(value: float) -> str:
    """One word per number: the same number always gives the same word."""
    if value == 0:
        return "zero"
    mantissa, exponent = f"{abs(value):.2e}".split("e")
    word = "".join(DIGITS[int(d)] for d in mantissa.replace(".", ""))
    sign = "minus " if value < 0 else ""
    return f"{sign}{word} e{int(exponent)}"


def rows_to_texts(X) -> list[str]:
    """One text per row of a numeric matrix, made of one word per value.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numbers (already validated).

    Returns
    -------
    texts : list of str
        ``texts[i]`` depends on row ``i`` only.

    Examples
    --------
    >>> rows_to_texts([[0.0, 1.5], [-2.0, 1.5]])
    ['zero loraka e0', 'minus mikaka e0 loraka e0']
    """
    X = np.asarray(X, dtype=np.float64)
    return [" ".join(value_to_word(v) for v in row) for row in X]
