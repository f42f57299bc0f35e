"""The client: ``KeyAPIClient`` composing the pipeline, limiting and the app layer.

Layer: above app. May import the pipeline, limiting and app; never bulk or the CLI.
"""
