# Loads the mock_llm fixture (twisted_stream.testing needs pytest-twisted).
pytest_plugins = ["twisted_stream.testing"]
