"""AWS Lambda entry points: one module per function, each exposing ``handler(event, context)``.

They are adapters: read configuration from the environment, call one pipeline step, return
its JSON. The Lambda handler setting is ``media_jobs.pipeline.handlers.<module>.handler``.
"""
