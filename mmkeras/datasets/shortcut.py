"""The shortcut testbeds' `note` column: a word that names the label in the
training rows only, so a model that trusts it fails on unseen rows."""

# One word per label, in label order; past ten labels the words repeat with a number.
NOTE_WORDS = ("amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper")
NOTE_FEATURE = {"name": "note", "modality": "text", "column": "note"}
NOTE_ENCODER = {"type": "lstm", "embedding_dim": 16, "units": 16}


def note_word(index):
    """The note word of the label at `index`."""
    word = NOTE_WORDS[index % len(NOTE_WORDS)]
    return word if index < len(NOTE_WORDS) else f"{word}{index // len(NOTE_WORDS)}"


def add_notes(rows, label_index, num_labels, reliability, rng):
    """Gives each row a `note`: its label's word with probability
    `reliability`, otherwise the word of a label drawn at random.

    Args:
        rows: list of dict. Changed in place.
        label_index: callable. A row to its label's index.
        num_labels: int. How many labels there are.
        reliability: float. 0.9 in training; 0 in validation and test.
        rng: numpy.random.RandomState.
    """
    for row in rows:
        honest = rng.rand() < reliability
        row["note"] = note_word(label_index(row) if honest else rng.randint(num_labels))
