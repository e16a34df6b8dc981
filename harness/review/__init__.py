"""``python -m harness review``: a run's changes reviewed in the browser, decisions written to the baseline and
to the reviewed-labels file (harness.reports.reviewed_labels).

review_state reads the run, the baseline and the labels and applies decisions; review_page renders the page;
server serves it on 127.0.0.1 behind a per-session token.
"""
