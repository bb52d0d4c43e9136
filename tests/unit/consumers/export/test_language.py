"""Language detection on a small labelled set: batch and single detection agree, repeats once."""

from __future__ import annotations

import pytest

from consumers.export import language

pytestmark = pytest.mark.slow  # ~5-10 s: lingua loads its models for the 20 languages

LABELLED = {
    "How do I sort a list of dictionaries by a value in Python?": "en",
    "¿Cómo puedo ordenar una lista de diccionarios por un valor en Python?": "es",
    "Comment trier une liste de dictionnaires par valeur en Python ?": "fr",
    "Wie sortiere ich eine Liste von Wörterbüchern nach einem Wert in Python?": "de",
    "Como posso ordenar uma lista de dicionários por um valor em Python?": "pt",
    "Как отсортировать список словарей по значению в Python?": "ru",
    "如何在 Python 中按值对字典列表进行排序。请给出示例代码。": "zh",
    "Pythonで辞書のリストを値で並べ替えるにはどうすればいいですか。": "ja",
    "Python에서 딕셔너리 목록을 값으로 정렬하려면 어떻게 해야 하나요?": "ko",
    "Jak posortować listę słowników według wartości w Pythonie?": "pl",
}


def test_a_labelled_set_is_detected_the_same_in_a_batch_and_one_by_one() -> None:
    texts = list(LABELLED)
    # Repeats and too-short texts in the batch: each distinct text is detected once, in place.
    batch = [*texts, texts[0], "ok", "", texts[5]]
    found = language.detect_many(batch)
    assert found[: len(texts)] == list(LABELLED.values())
    assert found[len(texts) :] == ["en", "", "", "ru"]
    assert [language.detect(t) for t in texts] == list(LABELLED.values())
