"""A turn, from start to end: a question, its answer streamed by a task the server owns,
the numbered events any reader follows, and the save however it ends.

In order: `start` (admit and save the question), `runner` (ask the model, publish events),
`readers` (follow them, here or from the event log), `saving` (the durable save),
`hooks` (after the save). `registry` and `live` know the turns this process runs.
"""
