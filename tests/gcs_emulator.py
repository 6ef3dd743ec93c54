"""gcp-storage-emulator, with the generation headers its downloads lack: `python gcs_emulator.py
start --host ... --port ...` (the emulator's own command line).

Real GCS answers every object download with `x-goog-generation` and `x-goog-metageneration`;
the emulator (2026.7) sends neither, and tensorstore, which orbax writes checkpoints with,
then fails now and then with "Malformed StorageGeneration" when it re-reads an OCDBT
manifest. Nothing else is changed.
"""
import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # noqa: BLE001 -- not found: the emulator already answered 404.
    return
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj["metageneration"])


objects.download = download  # Before the server module builds its routes from it.

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main())
