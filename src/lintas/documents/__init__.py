"""Travel documents: the ICAO 9303 machine-readable zone (`mrz`).

A pure library, like `lintas.biometrics`: text in, typed fields or a clear error out.
"""
