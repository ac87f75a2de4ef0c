"""Shared constants of the compat suite (importable: conftest puts this folder on sys.path)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

#: Variables that would point a run elsewhere; the suite clears them.
AZURE_VARS = ("AZURE_STORAGE_CONNECTION_STRING", "LUISY_AZURE_ACCOUNT_NAME", "LUISY_AZURE_STORAGE_KEY",
              "LUISY_AZURE_ENDPOINT", "LUISY_AZURE_CONTAINER_NAME", "LUISY_AZURE_SAS_URL",
              "AZURE_STORAGE_SAS_URL", "LUISY_REMOTE", "LUISY_LOCAL_REMOTE", "WORKING_DIR",
              "LUISY_REQUIREMENTS_PATH")
