"""Real-time recognition on the line (``lrihar run``): streams -> detector -> classifier -> tracks
-> action events -> step compliance per work cycle -> sinks (store, files, MQTT, video, live page).

``import lrihar.runtime`` loads no heavy library.
"""
