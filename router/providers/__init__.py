"""ExternalModelProvider: routing ModelRoute targets to hosted model APIs outside the cluster.

`api` holds the CRD model, `provider` compiles an object and its credential Secret into what
the proxy needs (and the status conditions that say whether it can), `adapters` knows each
provider type's paths, URLs and auth headers, `anthropic` translates OpenAI chat requests to
the Anthropic Messages API and back, `usage` reads token counts off replies and streams, and
`proxy` is the HTTP shell.
"""
