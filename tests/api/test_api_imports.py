"""The API side never imports torch, even while it accepts a TorchScript upload."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import io, sys
    from pathlib import Path
    from gradaudit.settings import load_settings
    from models.api_keys import create_key
    import api

    folder, url = Path(sys.argv[1]), sys.argv[2]
    app = api.create_app(load_settings({}, data_dir=folder, broker_url="memory://", database_url=url))
    with app.extensions["gradaudit"].sessions() as db_session:
        _, secret = create_key(db_session=db_session, name="ci")
    form = {"model": (io.BytesIO((folder / "net.pt").read_bytes()), "net.pt")}
    response = app.test_client().post("/v1/audits", data=form, content_type="multipart/form-data",
                                      headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 202, response.get_data(as_text=True)
    heavy = sorted(name for name in ("torch", "numpy", "onnx", "onnxruntime") if name in sys.modules)
    print("heavy:", ",".join(heavy))
""")


def test_api_does_not_import_torch(tmp_path, sqlite_url, torchscript_bytes):
    (tmp_path / "net.pt").write_bytes(torchscript_bytes)
    finished = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), sqlite_url], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "heavy:"
