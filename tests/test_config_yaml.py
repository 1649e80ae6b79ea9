"""YAML as people write it (issue 11), and command lines written for diffusers' LoRA DreamBooth scripts (issue 19):
typed coercion with one clear error, validation of numbers, LoRA flags implying LoRA, class names from literal
prompts, and every flag of train_dreambooth{,_lora,_lora_sdxl,_lora_flux2_klein}.py accepted."""
import math, re, warnings
import pytest, yaml
from dreambooth_nb.config import ConfigError, TrainConfig, validate
from dreambooth_nb.cli import config_from_args, parse, pop_compat_notices
from dreambooth_nb.data import sample_subject_dir
from tests.conftest import run_cli

def _yaml(tmp_path, text: str):
    p = tmp_path / 'run.yaml'; p.write_text(text); return p

# ---- values as people write them -------------------------------------------------------------------------------
@pytest.mark.parametrize('text,field,want', [
    ('learning_rate: 5e-6', 'learning_rate', 5e-6),            # PyYAML reads 5e-6 as a string
    ('adam_epsilon: 1e-8', 'adam_epsilon', 1e-8),
    ('resolution: "512"', 'resolution', 512),
    ('resolution: 512.0', 'resolution', 512),
    ('with_prior_preservation: "no"', 'with_prior_preservation', False),
    ('with_prior_preservation: "Yes"', 'with_prior_preservation', True),
    ('with_prior_preservation: "OFF"', 'with_prior_preservation', False),
    ('with_prior_preservation: on', 'with_prior_preservation', True),
    ('with_prior_preservation: 1', 'with_prior_preservation', True),
    ('with_prior_preservation: "0"', 'with_prior_preservation', False),
    ('snr_gamma: null', 'snr_gamma', None), ('snr_gamma: ~', 'snr_gamma', None), ("snr_gamma: ''", 'snr_gamma', None),
    ('snr_gamma: "5"', 'snr_gamma', 5.0), ('max_train_steps: None', 'max_train_steps', None),
    ('lora_target_modules: [to_q, to_v]', 'lora_target_modules', 'to_q,to_v'),
])
def test_yaml_values_are_coerced(tmp_path, text, field, want):
    value = getattr(TrainConfig.from_yaml(_yaml(tmp_path, text + '\n')), field)
    assert value == want and type(value) is type(want), (value, want)

@pytest.mark.parametrize('text,needle', [
    ('resolution: 512.5', 'resolution=512.5'), ('resolution: "big"', "resolution='big'"),
    ('with_prior_preservation: maybe', "with_prior_preservation='maybe'"), ('with_prior_preservation: 2', 'with_prior_preservation=2'),
    ('resolution: null', 'resolution=None'), ("instance_prompt: ''", "instance_prompt=''"),
    ('learning_rate: fast', "learning_rate='fast'"), ('class_name: no', 'class_name=False'), ('train_batch_size: true', 'train_batch_size=True'),
])
def test_bad_yaml_values_name_field_value_and_file(tmp_path, text, needle):
    p = _yaml(tmp_path, text + '\n')
    with pytest.raises(ConfigError) as e: TrainConfig.from_yaml(p)
    assert needle in str(e.value) and str(p) in str(e.value), str(e.value)

def test_from_dict_and_replace_coerce_too():
    cfg = TrainConfig.from_dict({'learning_rate': '1e-4', 'resolution': '256', 'center_crop': 'yes'})
    assert (cfg.learning_rate, cfg.resolution, cfg.center_crop) == (1e-4, 256, True)
    assert cfg.replace(max_train_steps='none', seed='3').max_train_steps is None and cfg.replace(seed='3').seed == 3
    with pytest.raises(ConfigError, match='fractional part'): cfg.replace(resolution=64.5)

# ---- validation of numbers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('text,needle', [
    ('learning_rate: .nan', 'learning_rate=nan must be a finite number'), ('learning_rate: "nan"', 'learning_rate=nan'),
    ('learning_rate: .inf', 'learning_rate=inf must be a finite number'), ('adam_weight_decay: "-inf"', 'adam_weight_decay=-inf'),
    ('resolution: 100000', 'resolution=100000 is too large: at most 4096'), ('adam_beta1: 1.5', 'adam_beta1=1.5 must be in [0, 1)'),
    ('adam_beta2: -0.1', 'adam_beta2=-0.1'), ('adam_epsilon: 0', 'adam_epsilon=0.0 must be a positive'),
    ('max_grad_norm: 0', 'max_grad_norm=0.0'), ('offset_noise: -0.1', 'offset_noise=-0.1 must be a number >= 0'),
    ('lr_warmup_steps: -3', 'lr_warmup_steps=-3'), ('checkpoints_total_limit: 0', 'checkpoints_total_limit=0'),
])
def test_validation_refuses_nonsense_numbers(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e: validate(TrainConfig.from_yaml(_yaml(tmp_path, text + '\n')))
    assert needle in str(e.value), str(e.value)

@pytest.mark.parametrize('text,needle', [('learning_rate: .nan', 'learning_rate=nan'), ('resolution: 100000', 'resolution=100000 is too large'),
                                         ('resolution: 64.5', 'resolution=64.5')])
def test_cli_config_errors_are_one_line(tmp_path, text, needle):
    p = _yaml(tmp_path, text + '\npretrained_model_name_or_path: tiny:sd15\n')
    res = run_cli('train', '--config', p, '--output_dir', tmp_path / 'r')
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and needle in errors[0], res.stderr
    assert not (tmp_path / 'r').exists()

# ---- one real run from a YAML file as people write it ---------------------------------------------------------
RUN_FLAGS = ['--max_train_steps', '1', '--resolution', '64', '--validation_steps', '10', '--num_inference_steps', '1', '--num_validation_images', '1']

def test_yaml_as_people_write_it_trains(tmp_path):
    p = _yaml(tmp_path, 'pretrained_model_name_or_path: tiny:sd15\nlearning_rate: 5e-6\nadam_epsilon: 1e-8\nresolution: "64"\n'
                        'with_prior_preservation: "no"\nrank: 8\ninstance_prompt: a photo of pxr glasses\nclass_prompt: a photo of glasses\n')
    res = run_cli('train', '--config', p, '--output_dir', tmp_path / 'r', *RUN_FLAGS)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f'warning: rank set in {p} without mode: training LoRA (mode=lora)' in res.stderr.splitlines()
    saved = yaml.safe_load((tmp_path / 'r' / 'config.yaml').read_text())
    assert (saved['learning_rate'], saved['adam_epsilon'], saved['resolution'], saved['with_prior_preservation']) == (5e-6, 1e-8, 64, False)
    assert (saved['mode'], saved['rank'], saved['identifier'], saved['class_name']) == ('lora', 8, 'pxr', 'glasses')

# ---- LoRA flags imply LoRA ----------------------------------------------------------------------------------------
def _cfg(*argv):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); cfg = config_from_args(parse(['train', *argv]))
    return cfg, [str(x.message) for x in w]

@pytest.mark.parametrize('flags,name', [(['--rank', '8'], '--rank'), (['--lora_alpha', '8'], '--lora_alpha'),
                                        (['--lora_layers', 'to_q,to_k'], '--lora_target_modules'), (['--lora_dropout', '0.1'], '--lora_dropout'),
                                        (['--use_dora'], '--use_dora')])
def test_lora_flags_without_mode_mean_lora(flags, name):
    cfg, warns = _cfg(*flags)
    assert cfg.mode == 'lora' and warns == [f'{name} given without --mode: training LoRA (mode=lora)'], warns

def test_lora_flags_respect_an_explicit_mode_and_defaults_do_not_count(tmp_path):
    assert _cfg('--rank', '8', '--mode', 'full') == (TrainConfig(rank=8), [])
    assert _cfg('--resolution', '256')[0].mode == 'full'                      # argparse defaults are not "given"
    p = _yaml(tmp_path, 'mode: full\n')
    cfg, warns = _cfg('--config', str(p), '--rank', '8')
    assert cfg.mode == 'full' and 'the LoRA flags are unused' in warns[0]

def test_rank_without_mode_on_the_command_line_trains_lora(tmp_path):
    flags = [f for f in RUN_FLAGS if f not in ('--validation_steps', '10')]            # --validation_epochs sets it
    res = run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--rank', '4', '--output_dir', tmp_path / 'r', *flags,
                  '--instance_prompt', 'a photo of pxr glasses', '--class_prompt', 'a photo of glasses', '--lora_dropout', '0.0',
                  '--validation_epochs', '2', '--optimizer', 'AdamW', '--output_kohya_format', '--cache_dir', tmp_path / 'cache')
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    assert 'warning: --rank, --lora_dropout given without --mode: training LoRA (mode=lora)' in lines, lines
    for flag in ('--lora_dropout', '--output_kohya_format', '--cache_dir'):
        assert sum(l.startswith(f'notice: {flag}:') for l in lines) == 1, (flag, lines)
    assert any(l.startswith('warning: --validation_epochs 2: sample grids every 10 steps') for l in lines), lines   # 5 photos, batch 1
    saved = yaml.safe_load((tmp_path / 'r' / 'config.yaml').read_text())
    assert (saved['mode'], saved['identifier'], saved['class_name'], saved['validation_steps']) == ('lora', 'pxr', 'glasses', 10)
    assert saved['optimizer'] == 'adamw'                                                # --optimizer AdamW is a real setting now

# ---- class names from literal prompts ------------------------------------------------------------------------------
@pytest.mark.parametrize('instance,klass,identifier,class_name', [
    ('a photo of pxr glasses', 'a photo of glasses', 'pxr', 'glasses'),
    ('a photo of sks dog', 'a photo of dog', 'sks', 'dog'),
    ('an image of zwx red car', 'an image of a red car', 'zwx', 'red car'),
    ('a sks backpack on a table', 'a backpack on a table', 'sks', 'backpack'),
])
def test_class_name_from_diffusers_style_prompts(tmp_path, instance, klass, identifier, class_name):
    cfg, _ = _cfg('--instance_prompt', instance, '--class_prompt', klass)
    assert (cfg.identifier, cfg.class_name) == (identifier, class_name)
    p = _yaml(tmp_path, yaml.safe_dump(dict(instance_prompt=instance, class_prompt=klass)))
    assert (TrainConfig.from_yaml(p).identifier, TrainConfig.from_yaml(p).class_name) == (identifier, class_name)

def test_given_names_are_never_overwritten():
    cfg, _ = _cfg('--instance_prompt', 'a photo of pxr glasses', '--class_prompt', 'a photo of glasses', '--class_name', 'eyewear', '--identifier', 'qwe')
    assert (cfg.identifier, cfg.class_name) == ('qwe', 'eyewear')

# ---- every flag of diffusers' DreamBooth scripts --------------------------------------------------------------------
# Read from huggingface/diffusers examples/dreambooth/*.py at commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (every
# parser.add_argument of parse_args). SWITCHES are store_true flags; the others take a value.
SWITCHES = set('''with_prior_preservation center_crop train_text_encoder gradient_checkpointing scale_lr use_8bit_adam push_to_hub allow_tf32
enable_xformers_memory_efficient_attention set_grads_to_none offset_noise pre_compute_text_embeddings text_encoder_use_attention_mask
skip_save_text_encoder do_edm_style_training output_kohya_format random_flip use_dora do_fp8_training skip_final_inference
use_aspect_ratio_buckets cache_latents upcast_before_saving offload enable_npu_flash_attention fsdp_text_encoder'''.split())
SCRIPT_FLAGS = {
    'train_dreambooth.py': '''pretrained_model_name_or_path revision variant tokenizer_name instance_data_dir class_data_dir instance_prompt
        class_prompt with_prior_preservation prior_loss_weight num_class_images output_dir seed resolution center_crop train_text_encoder
        train_batch_size sample_batch_size num_train_epochs max_train_steps checkpointing_steps checkpoints_total_limit resume_from_checkpoint
        gradient_accumulation_steps gradient_checkpointing learning_rate scale_lr lr_scheduler lr_warmup_steps lr_num_cycles lr_power
        use_8bit_adam dataloader_num_workers adam_beta1 adam_beta2 adam_weight_decay adam_epsilon max_grad_norm push_to_hub hub_token
        hub_model_id logging_dir allow_tf32 report_to validation_prompt num_validation_images validation_steps mixed_precision
        prior_generation_precision local_rank enable_xformers_memory_efficient_attention set_grads_to_none offset_noise snr_gamma
        pre_compute_text_embeddings tokenizer_max_length text_encoder_use_attention_mask skip_save_text_encoder validation_images
        class_labels_conditioning validation_scheduler''',
    'train_dreambooth_lora.py': '''pretrained_model_name_or_path revision variant tokenizer_name instance_data_dir class_data_dir instance_prompt
        class_prompt validation_prompt num_validation_images validation_epochs with_prior_preservation prior_loss_weight num_class_images
        output_dir seed resolution center_crop train_text_encoder train_batch_size sample_batch_size num_train_epochs max_train_steps
        checkpointing_steps checkpoints_total_limit resume_from_checkpoint gradient_accumulation_steps gradient_checkpointing learning_rate
        scale_lr lr_scheduler lr_warmup_steps lr_num_cycles lr_power dataloader_num_workers use_8bit_adam adam_beta1 adam_beta2
        adam_weight_decay adam_epsilon max_grad_norm push_to_hub hub_token hub_model_id logging_dir allow_tf32 report_to mixed_precision
        prior_generation_precision local_rank enable_xformers_memory_efficient_attention pre_compute_text_embeddings tokenizer_max_length
        text_encoder_use_attention_mask validation_images class_labels_conditioning rank lora_dropout image_interpolation_mode''',
    'train_dreambooth_lora_sdxl.py': '''pretrained_model_name_or_path pretrained_vae_model_name_or_path revision variant dataset_name
        dataset_config_name instance_data_dir cache_dir image_column caption_column repeats class_data_dir instance_prompt class_prompt
        validation_prompt num_validation_images validation_epochs do_edm_style_training with_prior_preservation prior_loss_weight
        num_class_images output_dir output_kohya_format seed resolution center_crop random_flip train_text_encoder train_batch_size
        sample_batch_size num_train_epochs max_train_steps checkpointing_steps checkpoints_total_limit resume_from_checkpoint
        gradient_accumulation_steps gradient_checkpointing learning_rate text_encoder_lr scale_lr lr_scheduler snr_gamma lr_warmup_steps
        lr_num_cycles lr_power dataloader_num_workers optimizer use_8bit_adam adam_beta1 adam_beta2 prodigy_beta3 prodigy_decouple
        adam_weight_decay adam_weight_decay_text_encoder adam_epsilon prodigy_use_bias_correction prodigy_safeguard_warmup max_grad_norm
        push_to_hub hub_token hub_model_id logging_dir allow_tf32 report_to mixed_precision prior_generation_precision local_rank
        enable_xformers_memory_efficient_attention rank lora_dropout use_dora image_interpolation_mode''',
    'train_dreambooth_lora_flux2_klein.py': '''pretrained_model_name_or_path revision bnb_quantization_config_path do_fp8_training variant
        dataset_name dataset_config_name instance_data_dir cache_dir image_column caption_column repeats class_data_dir instance_prompt
        class_prompt max_sequence_length text_encoder_out_layers validation_prompt skip_final_inference final_validation_prompt
        num_validation_images validation_epochs rank lora_alpha lora_dropout with_prior_preservation prior_loss_weight num_class_images
        output_dir seed resolution aspect_ratio_buckets use_aspect_ratio_buckets center_crop random_flip caption_dropout train_batch_size
        sample_batch_size num_train_epochs max_train_steps checkpointing_steps checkpoints_total_limit resume_from_checkpoint
        gradient_accumulation_steps gradient_checkpointing learning_rate guidance_scale text_encoder_lr scale_lr lr_scheduler
        lr_warmup_steps lr_num_cycles lr_power dataloader_num_workers weighting_scheme logit_mean logit_std mode_scale optimizer
        use_8bit_adam adam_beta1 adam_beta2 prodigy_beta3 prodigy_decouple adam_weight_decay adam_weight_decay_text_encoder lora_layers
        adam_epsilon prodigy_use_bias_correction prodigy_safeguard_warmup max_grad_norm push_to_hub hub_token hub_model_id logging_dir
        allow_tf32 cache_latents report_to mixed_precision upcast_before_saving offload prior_generation_precision local_rank
        enable_npu_flash_attention fsdp_text_encoder''',
}
VALUES = dict(pretrained_model_name_or_path=['tiny:sd15'], instance_prompt=['a photo of sks dog'], class_prompt=['a photo of dog'],
              output_dir=['out'], resolution=['512'], learning_rate=['1e-4'], lr_scheduler=['constant'], report_to=['tensorboard'],
              mixed_precision=['bf16'], resume_from_checkpoint=['latest'], adam_beta1=['0.9'], adam_beta2=['0.999'], adam_weight_decay=['1e-2'],
              adam_epsilon=['1e-08'], optimizer=['prodigy'], weighting_scheme=['logit_normal'], image_interpolation_mode=['lanczos'],
              text_encoder_out_layers=['10', '20', '30'], validation_images=['a.png', 'b.png'], prodigy_decouple=['True'],
              lora_layers=['to_k,to_q,to_v,to_out.0'], validation_prompt=['a photo of sks dog in a bucket'], guidance_scale=['3.5'],
              text_encoder_lr=['5e-6'], hub_token=['hf_secret'], instance_data_dir=[str(sample_subject_dir())], aspect_ratio_buckets=['1024,1024;768,1360'])

def _argv(script):
    argv = ['train']
    for name in SCRIPT_FLAGS[script].split(): argv += [f'--{name}'] + ([] if name in SWITCHES else VALUES.get(name, ['1']))
    return argv

@pytest.mark.parametrize('script', sorted(SCRIPT_FLAGS))
def test_every_flag_of_the_diffusers_scripts_is_accepted(script):
    args = parse(_argv(script))
    notes = pop_compat_notices(args)
    assert all(n.count('\n') == 0 for n in notes) and not any('hf_secret' in n for n in notes)
    assert len({n.split(':')[0] for n in notes}) == len(notes)                        # one notice per flag
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); cfg = config_from_args(args)
    validate(cfg)                                                                      # honoured flags land as valid fields
    assert (cfg.pretrained_model_name_or_path, cfg.identifier, cfg.class_name) == ('tiny:sd15', 'sks', 'dog')
    if 'rank' in SCRIPT_FLAGS[script].split(): assert cfg.mode == 'lora'
    if 'lora_layers' in SCRIPT_FLAGS[script].split(): assert cfg.lora_target_modules == 'to_k,to_q,to_v,to_out.0'
