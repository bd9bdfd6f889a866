"""Gateway API mode and the Gateway API Inference Extension for the router.

- `objects`: Gateway, HTTPRoute and InferencePool objects (as dicts) compiled into small
  frozen dataclasses, with errors naming the object and field;
- `table`: the compiled view (listeners by port, routes attached to each listener, pools);
- `matching`: pure request matching (listener, ModelRoute attachment, HTTPRoute precedence,
  weighted InferencePool backends, EPP headers);
- `listeners`: one HTTP server per Gateway listener port;
- `discovery`: the extra watches (Gateway, HTTPRoute, InferencePool) on top of
  `router.discovery`;
- `settings`: typed configuration; `mode`: wiring it into a running router.
"""
