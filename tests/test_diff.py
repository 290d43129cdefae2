"""diff_corpora, summarize_differences and verify_differences on planted data."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from scipy import stats
from statsmodels.stats.multitest import multipletests

from sklearn_hypothesaes import LLMClient, PhraseAnnotator
from sklearn_hypothesaes.toolkit import _diff
from sklearn_hypothesaes.toolkit._diff import DIFF_COLUMNS, diff_corpora
from sklearn_hypothesaes.toolkit._fisher import fisher_two_sided, two_proportion_stats
from sklearn_hypothesaes.toolkit._summary import (
    parse_differences,
    summarize_differences,
    verify_differences,
)

Z95 = stats.norm.isf(0.025)


def wilson(count, n):
    """Wilson score interval, by its closed form."""
    p = count / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2))
    return centre - half, centre + half


def planted(n_a=300, n_b=300, n_latents=12, seed=0):
    """Independent latents at 10%; latent 7 fires on 40% of A and 10% of B."""
    rng = np.random.default_rng(seed)
    A = rng.random((n_a, n_latents)) < 0.1
    B = rng.random((n_b, n_latents)) < 0.1
    A[:, 7] = rng.random(n_a) < 0.4
    strengths = rng.uniform(0.5, 2.0, size=(n_a + n_b, n_latents))
    return A * strengths[:n_a], B * strengths[n_a:]


def test_planted_property_is_the_top_difference():
    A, B = planted()
    labels = [f"concept {j}" for j in range(12)]
    texts_a = [f"a{i}" for i in range(300)]
    texts_b = [f"b{i}" for i in range(300)]
    table = diff_corpora(A, B, labels=labels, texts_a=texts_a, texts_b=texts_b)
    assert list(table.columns) == DIFF_COLUMNS
    top = table.iloc[0]
    assert top["latent"] == 7 and top["label"] == "concept 7"
    assert top["more_in"] == "a" and top["significant"]
    assert table.loc[table["significant"], "latent"].tolist() == [7]
    # The examples are the A texts where latent 7 is strongest, strongest first.
    strongest = np.argsort(-A[:, 7], kind="stable")[:3]
    assert top["examples_a"] == [texts_a[i] for i in strongest]
    assert table.attrs["n_tested"] == 12


def test_statistics_match_hand_computation():
    # Latent 0: 30 of 100 vs 10 of 200; latent 1: 0 of 100 vs 6 of 200.
    A = np.zeros((100, 2))
    A[:30, 0] = 1
    B = np.zeros((200, 2))
    B[:10, 0] = 1
    B[:6, 1] = 1
    table = diff_corpora(A, B, sort_by="pvalue").set_index("latent")
    row = table.loc[0]
    assert (row["count_a"], row["count_b"]) == (30, 10)
    assert row["freq_a"] == 0.3 and row["freq_b"] == 0.05
    assert row["difference"] == pytest.approx(0.25)
    (l1, u1), (l2, u2) = wilson(30, 100), wilson(10, 200)
    assert row["difference_low"] == pytest.approx(
        0.25 - np.sqrt((0.3 - l1) ** 2 + (u2 - 0.05) ** 2)
    )
    assert row["difference_high"] == pytest.approx(
        0.25 + np.sqrt((u1 - 0.3) ** 2 + (0.05 - l2) ** 2)
    )
    assert row["ratio"] == pytest.approx(6.0)
    half = Z95 * np.sqrt(1 / 30 - 1 / 100 + 1 / 10 - 1 / 200)
    assert row["ratio_low"] == pytest.approx(6.0 * np.exp(-half))
    assert row["ratio_high"] == pytest.approx(6.0 * np.exp(half))
    assert row["pvalue"] == pytest.approx(
        stats.fisher_exact([[30, 70], [10, 190]]).pvalue
    )
    # A zero count: 0.5 added to both counts and both sizes.
    zero = table.loc[1]
    ratio = (0.5 / 100.5) / (6.5 / 200.5)
    half = Z95 * np.sqrt(1 / 0.5 - 1 / 100.5 + 1 / 6.5 - 1 / 200.5)
    assert zero["ratio"] == pytest.approx(ratio)
    assert zero["ratio_low"] == pytest.approx(ratio * np.exp(-half))
    assert zero["ratio_high"] == pytest.approx(ratio * np.exp(half))
    assert zero["more_in"] == "b"
    # Benjamini-Hochberg over the two latents.
    expected = multipletests(table["pvalue"], method="fdr_bh")[1]
    np.testing.assert_allclose(table["pvalue_corrected"], expected)
    bonf = diff_corpora(A, B, correction="bonferroni", sort_by="pvalue")
    np.testing.assert_allclose(
        bonf["pvalue_corrected"], np.minimum(1, 2 * bonf["pvalue"])
    )


def test_two_proportion_z_test_by_hand():
    out = two_proportion_stats([30], 100, [10], 200, test="two-proportion")
    pooled = 40 / 300
    z = 0.25 / np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 200))
    assert out["pvalue"][0] == pytest.approx(2 * stats.norm.sf(z))


def test_identical_corpora_differ_nowhere():
    A, _ = planted()
    table = diff_corpora(A, A.copy())
    assert not table["significant"].any()
    assert (table["pvalue"] == 1.0).all()
    assert (table["difference"] == 0).all()
    assert set(table["more_in"]) == {"neither"}


def test_a_latent_that_never_fires():
    A, B = planted()
    A[:, 3] = 0
    B[:, 3] = 0
    table = diff_corpora(A, B).set_index("latent")
    row = table.loc[3]
    assert (row["count_a"], row["count_b"]) == (0, 0)
    assert np.isnan(row["ratio"])
    assert (row["ratio_low"], row["ratio_high"]) == (0.0, np.inf)
    assert (row["pvalue"], row["pvalue_corrected"]) == (1.0, 1.0)
    assert not row["significant"]
    assert table.attrs["n_tested"] == 11  # left out of the correction


def test_thresholds_decide_what_fires():
    # Latent 0 is weakly on (0.05) in all of B, strongly on (1.0) in half of A.
    A = np.zeros((40, 2))
    A[:20, 0] = 1.0
    A[:, 1] = 1.0
    B = np.zeros((40, 2))
    B[:, 0] = 0.05
    B[:, 1] = 1.0
    relative = diff_corpora(A, B).set_index("latent").loc[0]
    assert (relative["count_a"], relative["count_b"]) == (20, 0)
    assert relative["threshold"] == pytest.approx(0.2)
    positive = diff_corpora(A, B, thresholds="positive").set_index("latent").loc[0]
    assert (positive["count_a"], positive["count_b"]) == (20, 40)
    given = diff_corpora(A, B, thresholds=[0.01, 0.5]).set_index("latent").loc[0]
    assert (given["count_a"], given["count_b"]) == (20, 40)


def test_sparse_input_and_top():
    A, B = planted()
    dense = diff_corpora(A, B)
    sparse = diff_corpora(sp.csr_matrix(A), sp.csc_matrix(B), top=3)
    assert len(sparse) == 3
    pd.testing.assert_frame_equal(
        sparse.drop(columns=["examples_a", "examples_b"]),
        dense.head(3).drop(columns=["examples_a", "examples_b"]),
    )


class KeywordEmbedder:
    """Duck-typed InterpretableEmbedder: latent j fires on texts with word j."""

    words = ["dog", "cat", "rain"]

    def __init__(self):
        self.labels_ = pd.DataFrame({"latent": [0, 1, 2], "label": self.words})
        self.thresholds_ = np.full(3, 0.5, dtype=np.float32)

    def transform(self, texts):
        rows = [[float(w in t.split()) for w in self.words] for t in texts]
        return sp.csr_matrix(np.array(rows))

    def get_feature_names_out(self):
        return np.array([f"mentions {w}" for w in self.words], dtype=object)


def test_embedder_and_texts():
    texts_a = ["dog runs"] * 30 + ["cat sits"] * 10
    texts_b = ["cat sits"] * 30 + ["rain falls"] * 10
    table = diff_corpora(texts_a, texts_b, embedder=KeywordEmbedder())
    assert table["label"].tolist()[:2] == ["dog", "cat"]
    assert table.iloc[0]["examples_a"] == ["dog runs"] * 3
    assert table.iloc[0]["examples_b"] == []
    assert (table["threshold"] == 0.5).all()
    Z = KeywordEmbedder().transform(texts_a)
    same = diff_corpora(
        Z, KeywordEmbedder().transform(texts_b), labels=["dog", "cat", "rain"]
    )
    np.testing.assert_allclose(same["pvalue"], table["pvalue"])


def test_bad_inputs_name_the_parameter():
    A, B = planted()
    with pytest.raises(
        ValueError,
        match=r"'B' parameter of diff_corpora must have "
        r"the same latents as 'A' \(12 columns\)\. Got 11",
    ):
        diff_corpora(A, B[:, :11])
    with pytest.raises(
        ValueError,
        match=r"'texts_a' parameter .* one text per "
        r"document of 'A' \(300\)\. Got 2 texts",
    ):
        diff_corpora(A, B, texts_a=["x", "y"])
    with pytest.raises(
        ValueError,
        match=r"'labels' parameter .* one label per "
        r"latent \(12\)\. Got 3 labels",
    ):
        diff_corpora(A, B, labels=["a", "b", "c"])
    with pytest.raises(
        ValueError,
        match=r"'thresholds' parameter .* one value per "
        r"latent \(12\)\. Got shape \(2,\)",
    ):
        diff_corpora(A, B, thresholds=[0.1, 0.2])
    with pytest.raises(
        ValueError,
        match=r"'A' parameter of diff_corpora must be a "
        r"2-d array .* Got shape \(5,\)",
    ):
        diff_corpora(np.ones(5), B)
    with pytest.raises(
        TypeError,
        match=r"'A' parameter .* got text\. To pass "
        r"texts, give embedder=",
    ):
        diff_corpora(["a dog", "a cat"], ["rain"])
    with pytest.raises(ValueError, match=r"'A' parameter .* non-negative"):
        diff_corpora(-A, B)
    with pytest.raises(ValueError, match=r"'A' parameter .* at least one document"):
        diff_corpora(np.zeros((0, 12)), B)
    with pytest.raises(ValueError, match=r"'test' parameter of diff_corpora"):
        diff_corpora(A, B, test="chi2")


# The differences in words ----------------------------------------------------
def corpora(n=120, seed=0):
    """A mentions dogs in 60% of texts, B in 10%; both mention cats in 30%."""
    rng = np.random.default_rng(seed)

    def make(p_dog, tag):
        out = []
        for i in range(n):
            words = [f"{tag}{i}"]
            if rng.random() < p_dog:
                words.append("dog")
            if rng.random() < 0.3:
                words.append("cat")
            out.append(" ".join(words))
        return out

    return make(0.6, "a"), make(0.1, "b")


def summary_chat(reply):
    def chat(body):
        if "Summarise how" in last_user_message(body):
            return reply
        return concept_judge(body)

    return chat


def test_summary_is_verified_on_held_out_texts(make_client):
    texts_a, texts_b = corpora()
    held_a, held_b = corpora(seed=1)
    embedder = KeywordEmbedder()
    table = diff_corpora(
        texts_a, texts_b, embedder=embedder, labels=["dog", "cat", "rain"]
    )
    reply = json.dumps(
        [
            {"property": "mentions a dog", "more_in": "A"},
            {"property": "mentions a cat", "more_in": "B"},
        ]
    )
    with FakeOpenAIServer(chat=summary_chat(reply)) as srv:
        summary = summarize_differences(
            table, make_client(srv), held_a, held_b, n_examples=1
        )
        server_usage = srv.usage
    out = summary.differences
    assert out["property"].tolist() == ["mentions a dog", "mentions a cat"]
    assert out["more_in"].tolist() == ["a", "b"]
    dog_a = sum("dog" in t for t in held_a)
    dog_b = sum("dog" in t for t in held_b)
    assert (out.loc[0, "count_a"], out.loc[0, "count_b"]) == (dog_a, dog_b)
    assert out.loc[0, "pvalue"] == pytest.approx(
        stats.fisher_exact([[dog_a, 120 - dog_a], [dog_b, 120 - dog_b]]).pvalue
    )
    assert out["verified"].tolist() == [True, False]
    assert summary.share_verified == 0.5
    # Only the significant row is shown, with its frequencies and an example.
    assert '1. "dog": A ' in summary.prompt and '"cat"' not in summary.prompt
    assert len(re.findall(r"e\.g\. A: ", summary.prompt)) == 1
    assert summary.usage_summary.calls == 1
    # Every other request annotated the 2 x 120 held-out texts.
    assert summary.usage.calls == server_usage["calls"]
    assert summary.usage_verification.calls == server_usage["calls"] - 1 >= 240
    assert summary.usage.prompt_tokens == server_usage["prompt_tokens"]
    assert summary.usage.completion_tokens == server_usage["completion_tokens"]


def test_summary_warns_when_the_check_reuses_the_table_texts(make_client):
    texts_a, texts_b = corpora()
    table = diff_corpora(texts_a, texts_b, embedder=KeywordEmbedder())
    reply = '[{"property": "mentions \\"dog\\"", "more_in": "A"}]'
    with FakeOpenAIServer(chat=summary_chat(reply)) as srv:
        with pytest.warns(
            UserWarning,
            match=r"6 example texts of the table are "
            r"among the texts used to verify",
        ):
            summary = summarize_differences(
                table, make_client(srv), texts_a, texts_b, annotator=PhraseAnnotator()
            )
    assert summary.differences["verified"].tolist() == [True]
    assert summary.usage_verification.calls == 0


def test_summary_without_significant_rows_asks_nothing(make_client):
    A, _ = planted()
    table = diff_corpora(A, A.copy())
    with FakeOpenAIServer(chat=summary_chat("[]")) as srv:
        with pytest.warns(UserWarning, match="no significant difference"):
            summary = summarize_differences(table, make_client(srv), ["x"], ["y"])
        assert srv.usage["calls"] == 0
    assert summary.differences.empty and summary.usage.calls == 0


def test_verify_differences_with_phrases():
    a = ["a great film"] * 30 + ["a film"] * 10
    b = ["a film"] * 35 + ["a great film"] * 5
    out, usage = verify_differences(
        ['mentions "great"', 'mentions "film"'], ["a", "b"], a, b,
        annotator=PhraseAnnotator(),
    )  # fmt: skip
    assert out[["count_a", "n_a", "count_b", "n_b"]].values.tolist() == [
        [30, 40, 5, 40],
        [40, 40, 40, 40],
    ]
    assert out["verified"].tolist() == [True, False]
    assert out.loc[1, "pvalue"] == 1.0
    with pytest.raises(
        ValueError,
        match=r"'more_in' parameter .* one side per "
        r"property \(2\)\. Got 1",
    ):
        verify_differences(["x", "y"], ["a"], a, b, annotator=PhraseAnnotator())


def test_parse_differences():
    text = '<think>hm</think>Sure:\n[{"property": "is angry", "more_in": "rotten"}]'
    assert parse_differences(text, ("fresh", "rotten")) == [("is angry", "b")]
    with pytest.raises(ValueError, match="no JSON list"):
        parse_differences("A is longer.")
    with pytest.raises(ValueError, match="more_in must be 'A' or 'B'"):
        parse_differences('[{"property": "x", "more_in": "C"}]')


def test_embedder_latents_without_a_label():
    class Partial(KeywordEmbedder):
        def __init__(self):
            super().__init__()
            self.labels_["label"] = ["mentions dog", None, np.nan]

        def get_feature_names_out(self):
            return np.array(["mentions dog", "latent_1", "dead_2"], dtype=object)

    texts_a = ["dog cat"] * 30 + ["rain"] * 10
    texts_b = ["cat"] * 35 + ["dog rain"] * 5
    table = diff_corpora(texts_a, texts_b, embedder=Partial())
    table = table.set_index("latent").sort_index()
    assert table["label"].tolist() == ["mentions dog", "latent_1", "dead_2"]
    assert table["labelled"].tolist() == [True, False, False]
    assert table["significant"].tolist() == [True, False, False]
    # Only the labelled row reaches the prompt.
    table.loc[1, "significant"] = True
    with FakeOpenAIServer(chat=summary_chat("[]")) as srv:
        client = LLMClient(base_url=srv.base_url, cache_dir=False)
        with pytest.raises(RuntimeError, match="no usable summary"):
            with pytest.warns(RuntimeWarning):
                summarize_differences(table.reset_index(), client, ["x"], ["y"])
        prompt = last_user_message(srv.requests[0]["body"])
    assert '"mentions dog"' in prompt and "latent_1" not in prompt


def test_z_test_warns_on_small_counts():
    A, B = planted()
    A[:2, 5], A[2:, 5] = 1.0, 0.0  # latent 5: 2 of 300 vs 0 of 300 after this
    B[:, 5] = 0.0
    with pytest.warns(
        UserWarning,
        match=r"diff_corpora: 1 latents have fewer than "
        r"5 expected documents .* use test='fisher'",
    ):
        table = diff_corpora(A, B, test="two-proportion")
    row = table.set_index("latent").loc[7]
    pooled = (row["count_a"] + row["count_b"]) / 600
    z = row["difference"] / np.sqrt(pooled * (1 - pooled) * (2 / 300))
    assert row["pvalue"] == pytest.approx(2 * stats.norm.sf(abs(z)))


@pytest.mark.parametrize("n_a, n_b", [(7, 5), (20, 20), (60, 140), (3000, 3000)])
def test_fisher_two_sided_matches_scipy(n_a, n_b):
    rng = np.random.default_rng(n_a)
    ca = rng.integers(0, n_a + 1, 60)
    # Half the tables near independence, where ties between the two sides occur.
    cb = rng.integers(0, n_b + 1, 60)
    cb[:30] = np.clip(ca[:30] * n_b // n_a + rng.integers(-2, 3, 30), 0, n_b)
    expected = [
        stats.fisher_exact([[x, n_a - x], [y, n_b - y]]).pvalue
        for x, y in zip(ca, cb, strict=True)
    ]
    np.testing.assert_allclose(
        fisher_two_sided(ca, n_a, cb, n_b), expected, rtol=1e-9, atol=1e-300
    )


def test_names_moved_out_of_diff_still_import_from_it():
    """Callers written before _fisher and _summary were split off (the command
    line, benchmarks, the package's lazy table) import these from _diff."""
    from sklearn_hypothesaes.toolkit import _fisher, _summary

    for module, names in (
        (_fisher, ["CORRECTIONS", "TESTS", "correct_pvalues", "fisher_greater",
                   "fisher_two_sided", "two_proportion_stats"]),
        (_summary, ["SUMMARY_COLUMNS", "DifferenceSummary", "parse_differences",
                    "summarize_differences", "summary_prompt",
                    "verify_differences"]),
    ):  # fmt: skip
        for name in names:
            assert getattr(_diff, name) is getattr(module, name)
            assert name in _diff.__all__
