"""The offline tools behind `deepsvdd score`, `calibrate` and `inspect`: the service's pixel
path and model loading without the HTTP server. Nothing on the request path imports them."""
