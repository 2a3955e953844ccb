"""Scoring production files with a registered model, in four concerns:

- :mod:`core.scoring.model`: the version's signature (read without loading it) and its pipeline,
  loaded from a copy whose hashes were checked;
- :mod:`core.scoring.inputs`: a file's format, its batches, its columns checked and its values
  converted to the signature;
- :mod:`core.scoring.runs`: the plan (resolve, check, find an earlier scoring) and the run that the
  job worker and the CLI call, with the labelled metrics (:mod:`core.scoring.outcomes`) and drift
  counted on the way;
- :mod:`core.scoring.export`: a preview and the parquet / CSV exports.

The names below are the package's interface; callers import them from ``core.scoring``.
"""

from core.errors import BadInputError
from core.scoring.export import csv_copy, export, neutral_text, neutralise, preview
from core.scoring.inputs import (
    BATCH_ROWS,
    InputFile,
    InputReport,
    coerce_batch,
    data_file,
    file_digest,
    input_columns,
    iter_batches,
    missing_columns,
    missing_message,
    open_input,
    save_upload,
)
from core.scoring.model import ScoringModel, Signature, decide, load_model, signature, with_current_cutoff
from core.scoring.outcomes import _Outcomes, _RankedScores, holdout_at_cutoff
from core.scoring.runs import (
    ADDED,
    EXPERIMENT,
    AlreadyScoredError,
    EarlierScoring,
    MetricComparison,
    ScoringPlan,
    ScoringReport,
    compare_with_training,
    find_previous,
    load_report,
    output_path,
    plan,
    plan_for_model,
    run,
    score,
)

__all__ = [
    "ADDED", "BATCH_ROWS", "EXPERIMENT", "AlreadyScoredError", "BadInputError", "EarlierScoring", "InputFile", "InputReport",
    "MetricComparison", "ScoringModel", "ScoringPlan", "ScoringReport", "Signature", "_Outcomes", "_RankedScores",
    "coerce_batch", "compare_with_training", "csv_copy", "data_file", "decide", "export", "file_digest", "find_previous",
    "holdout_at_cutoff", "input_columns", "iter_batches", "load_model", "load_report", "missing_columns", "missing_message",
    "neutral_text", "neutralise", "open_input", "output_path", "plan", "plan_for_model", "preview", "run", "save_upload",
    "score", "signature", "with_current_cutoff",
]
