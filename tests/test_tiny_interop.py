"`dreambooth-nb tiny` writes folders diffusers loads, and one denoising step agrees with our adapter."
import subprocess, sys
import pytest, torch
from diffusers import StableDiffusionPipeline
from tests.conftest import run_cli

@pytest.mark.parametrize('family,prediction', [('sd15', 'epsilon'), ('sd21', 'v_prediction')])
def test_tiny_folder_loads_in_diffusers_and_matches(tmp_path, family, prediction):
    from dreambooth_nb.load import load_backbone
    res = run_cli('tiny', '--family', family, '--out', tmp_path / 'm')
    assert res.returncode == 0, res.stderr
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / 'm')
    assert pipe.scheduler.config.prediction_type == prediction
    bb = load_backbone(str(tmp_path / 'm'))
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 32, 32, generator=g)
    noisy, t, _ = bb.noise_and_target(latents, generator=g)
    with torch.no_grad():
        cond = bb.encode_prompt(['a photo of olis dog', 'a photo of dog'])
        ids = pipe.tokenizer(['a photo of olis dog', 'a photo of dog'], padding='max_length', max_length=77, return_tensors='pt').input_ids
        torch.testing.assert_close(pipe.text_encoder(ids)[0], cond)
        torch.testing.assert_close(pipe.unet(noisy, t, encoder_hidden_states=cond).sample, bb.predict(noisy, t, cond))
    image = pipe('a photo of olis dog', num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)

def test_python_dash_m_runs_the_same_cli(tmp_path):
    res = subprocess.run([sys.executable, '-m', 'dreambooth_nb', 'tiny', '--out', str(tmp_path / 'm')], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / 'm' / 'model_index.json').is_file()
