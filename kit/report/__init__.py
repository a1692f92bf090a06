"""`kit report`: a static HTML report of training runs and submissions.

    views.py      the runs a report shows (RunView, default_runs, ValData), loaded and checked
                  against the installed validation split; the summary table's rows
    charts.py     everything drawn with matplotlib, in one fixed style: the run charts, the
                  digit grids and the leaderboard chart that `kit scores --plot` draws too
    page.py       build(): the Jinja2 environment, the page's context, the atomic output folder
    templates/    the page (report.html.j2) and its style sheet (report.css)

The metric maths behind the charts (confusion, reliability, ECE_BINS) is in kit.metrics.
"""
