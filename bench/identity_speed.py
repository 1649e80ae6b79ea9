"""Cost of the model identity's weights fingerprint on Stable Diffusion 1.5-sized files.

    python bench/identity_speed.py                 # writes SD 1.5-sized safetensors files (4.3 GB) into a temp folder
    python bench/identity_speed.py --scale 0.25    # a quarter of the size

The fingerprint reads each weights file's size, its safetensors header and 8 windows of 64 KiB (backbones.file_fingerprint).
Reported: seconds with the files in the page cache (warm) and, when this process may drop the page cache (root on Linux),
cold; and, for comparison, a full sha256 of the UNet file (what hashing every byte would cost).
"""
import argparse, json, os, struct, tempfile, time
from pathlib import Path

SD15_BYTES = {'unet/diffusion_pytorch_model.safetensors': 3_438_167_536, 'text_encoder/model.safetensors': 492_265_168,
              'vae/diffusion_pytorch_model.safetensors': 334_643_268}

def write_fake_safetensors(path: Path, size: int, chunk: int = 64 << 20):
    "A file shaped like safetensors (u64 header length, JSON header, data) of `size` bytes of random data."
    header = json.dumps({'__metadata__': {'format': 'pt'}, 'w': {'dtype': 'F32', 'shape': [(size - 200) // 4], 'data_offsets': [0, (size - 200) // 4 * 4]}}).encode()
    header += b' ' * (192 - len(header) % 8 if len(header) % 8 else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(chunk)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(header))); f.write(header)
        left = size - 8 - len(header)
        while left > 0: n = min(left, chunk); f.write(block[:n]); left -= n

def drop_caches() -> bool:
    try:
        os.sync(); Path('/proc/sys/vm/drop_caches').write_text('3\n'); return True
    except OSError: return False

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0]); p.add_argument('--scale', type=float, default=1.0)
    args = p.parse_args()
    from dreambooth_nb.backbones import file_fingerprint
    from dreambooth_nb.checkpoint import sha256_file
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_DIR')) as d:
        files = {rel: Path(d) / rel for rel in SD15_BYTES}
        for rel, path in files.items(): write_fake_safetensors(path, int(SD15_BYTES[rel] * args.scale))
        total = sum(p.stat().st_size for p in files.values()) / 1e9
        t0 = time.perf_counter(); [file_fingerprint(p) for p in files.values()]; warm = time.perf_counter() - t0
        cold = None
        if drop_caches():
            t0 = time.perf_counter(); [file_fingerprint(p) for p in files.values()]; cold = time.perf_counter() - t0
        unet = files['unet/diffusion_pytorch_model.safetensors']
        t0 = time.perf_counter(); sha256_file(unet); full = time.perf_counter() - t0
        print(f"files: {total:.2f} GB (SD 1.5 unet + text encoder + vae, x{args.scale})")
        print(f"fingerprint, warm cache: {warm * 1000:.1f} ms")
        print(f"fingerprint, cold cache: {cold * 1000:.1f} ms" if cold is not None else "fingerprint, cold cache: (cannot drop the page cache here)")
        print(f"full sha256 of the unet file, for comparison: {full:.1f} s")

if __name__ == '__main__': main()
