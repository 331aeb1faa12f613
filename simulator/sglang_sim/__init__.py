"""sglang_sim: a CPU stand-in for the SGLang HTTP server (see README.md)."""

__version__ = "0.1.0"
# The SGLang release whose HTTP behaviour the simulator copies unless --sim-version says
# otherwise; reported in /server_info.
SGLANG_VERSION = "0.5.23"
