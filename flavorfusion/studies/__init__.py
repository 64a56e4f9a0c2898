"""One report for a sweep, finished or running: `python -m flavorfusion.study DIR` calls `report(DIR)`.

`sweep.py` reads every source a sweep directory may hold (runs, `vertex_jobs.yaml`, the Optuna journal), merged
by job number; `choose.py` marks the Pareto front and chooses a run (and writes `best.yaml`, the experiment that
reproduces it); `plots.py` draws the plots; `write.py` writes study.csv, study.md and the plots beside the runs,
and logs them to W&B.
"""

from flavorfusion.studies.choose import choose
from flavorfusion.studies.sweep import Run, Study, read_sweep
from flavorfusion.studies.write import report, to_frame

__all__ = ["Run", "Study", "choose", "read_sweep", "report", "to_frame"]
