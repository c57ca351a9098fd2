"""Imported by the analysis fork server only (see sandbox): one DuckDB instance, opened once there,
so that every child forked from it starts with it open instead of spending about 20 ms on it."""

from .connection import _connect

connection = _connect()
