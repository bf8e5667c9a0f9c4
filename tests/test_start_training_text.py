"""A start's training text and its unrolled loss: sources read as prose, pieces kept and recorded,
and the steps a start is trained through being the encode's own."""

import pytest
import torch
from helpers import SLOW_TEXT, TEXTS, one_text_curve

import memtok.training.texts as texts
from memtok import MemtokError
from memtok.settings.recipes import get_recipe
from memtok.training.losses import after_steps, reconstruction, unrolled
from memtok.training.text_sources import TEXT_SOURCES, TextSource, html_text, roff_text

PAGE = r""".\" Copyright and licence: a comment
.TH LS 1 "2022" "GNU coreutils 9.1" "User Commands"
.SH NAME
ls \- list directory contents
.SH SYNOPSIS
\fBls\fP [\fI\,OPTION\/\fP]... [\fI\,FILE\/\fP]...
.PP
Sort entries alphabetically if none of \fB\-cftuvSUX\fP nor \fB\-\-sort\fP is specified;
it\(aqs the default.
"""


def test_a_manual_page_reads_as_its_prose():
    text = roff_text(PAGE)
    assert text.startswith("NAME ls - list directory contents")
    assert "ls [OPTION]... [FILE]..." in text and "none of -cftuvSUX nor --sort is specified" in text
    assert "it's the default." in text
    assert "\\" not in text and ".TH" not in text and "Copyright" not in text


def test_an_html_page_reads_as_its_body_without_scripts():
    page = "<html><head><title>t</title><style>p{}</style></head><body><h1>Capítulo 1</h1><script>x()</script>" \
           "<p>Hay varias   opciones.</p></body></html>"
    assert html_text(page) == "Capítulo 1\nHay varias opciones."


def test_pieces_are_cut_once_then_read_back_while_their_sources_are_the_same(tiny_codec, tmp_path, monkeypatch):
    lm, cache = tiny_codec.lm, tmp_path / "pieces.safetensors"
    docs = {"mine.txt": TEXTS * 10}
    first = texts.training_pieces(lm, [], docs, (3, 6), cache=cache)
    assert first.train and first.held and all(3 <= len(p) <= 6 for p in first.train + first.held)
    assert first.sources[0].startswith(f"mine.txt: {len(TEXTS) * 10} documents")

    def never(*args, **kwargs):
        raise AssertionError("cut again")

    monkeypatch.setattr(texts, "cut", never)
    again = texts.training_pieces(lm, [], docs, (3, 6), cache=cache)
    assert (again.train, again.held, again.sources) == (first.train, first.held, first.sources)
    with pytest.raises(AssertionError, match="cut again"):  # other text: cut anew
        texts.training_pieces(lm, [], {"mine.txt": TEXTS[:3] * 10}, (3, 6), cache=cache)


def test_a_source_that_is_not_installed_is_refused_by_name(tiny_codec, monkeypatch):
    absent = TextSource("manpages-es", "es", "their Spanish translations", lambda: (None, iter(())))
    monkeypatch.setitem(TEXT_SOURCES, "manpages-es", absent)
    with pytest.raises(MemtokError, match="text source manpages-es is not installed.*make train-text"):
        texts.training_pieces(tiny_codec.lm, ["manpages-es"], {}, (3, 6))
    with pytest.raises(MemtokError, match="unknown text source 'wiki'"):
        texts.training_pieces(tiny_codec.lm, ["wiki"], {}, (3, 6))


@pytest.mark.parametrize("recipe", ["memtok:min_margin=5", "memtok:rank=0:min_margin=5"])  # never done in 3
def test_the_steps_a_start_is_trained_through_are_the_encodes_own(tiny_codec, recipe):
    """After K steps from the same vector, the unrolled loss is the loss the encode's own K-th pass
    reports: the same parameters, factorisation and optimiser. Equal up to float32 rounding
    (eps 1.2e-7) accumulated over the model's sums and three updates, hence rel 1e-4."""
    lm, k = tiny_codec.lm, 3
    _, points = one_text_curve(tiny_codec, recipe, max_steps=k + 1)
    assert [p.step for p in points][:k + 1] == list(range(k + 1))  # not exact before the K-th pass
    ids = tiny_codec.target_ids(SLOW_TEXT)[:-1]  # the text without its EOS: the loss adds it
    guess = lm.embedding_mean.expand(1, 1, -1).float()
    moved = after_steps(lm, get_recipe(recipe), guess, [ids], k)
    ce, _, _ = reconstruction(lm, guess + moved, [ids])
    assert float(ce[0]) == pytest.approx(points[k].loss, rel=1e-4)
    assert float(ce[0]) != pytest.approx(points[0].loss, rel=1e-2)  # the steps moved it


def test_the_unrolled_loss_reaches_the_guess_through_the_steps_first_order(tiny_codec):
    lm = tiny_codec.lm
    ids = tiny_codec.target_ids(SLOW_TEXT)[:-1]
    guess = lm.embedding_mean.expand(1, 1, -1).float().clone().requires_grad_(True)
    ce, _, _ = unrolled(lm, get_recipe("memtok"), guess, [ids], 2)
    ce.sum().backward()
    moved = guess.detach() + after_steps(lm, get_recipe("memtok"), guess, [ids], 2)
    at_moved = moved.clone().requires_grad_(True)
    reconstruction(lm, at_moved, [ids])[0].sum().backward()
    assert torch.equal(guess.grad, at_moved.grad)  # the gradient at the moved vectors, passed straight back
