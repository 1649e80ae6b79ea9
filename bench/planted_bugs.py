"""Does tests/test_personalizes.py catch a broken DreamBooth? Plants one bug, trains the demo's recipe on the micro model
with priors, scores it with the test's measure and says which of its tests fail (each should, for its bug).

    python bench/planted_bugs.py drop     # the identifier dropped at sampling time
    python bench/planted_bugs.py target   # x0 regressed instead of the noise (a wrong training target)

Measured (2 shared CPU cores, about 5 minutes each): drop -> subject 0.357 = class 0.357, two tests fail;
target -> subject 0.093, class 0.262, kept 0.124, all three fail."""
import sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # the repository root: tests/ is importable
import dreambooth_nb.backbones as B, dreambooth_nb.sampling as S
import tests.test_personalizes as T
bug = sys.argv[1] if len(sys.argv) > 1 else ''
if bug not in ('drop', 'target'): sys.exit('usage: python bench/planted_bugs.py drop|target')
if bug == 'target':
    orig = B.SDBackbone.noise_and_target
    def wrong(self, latents, generator=None, offset_noise=0.0):
        noisy, t, target = orig(self, latents, generator, offset_noise); return noisy, t, latents
    B.SDBackbone.noise_and_target = wrong
if bug == 'drop':
    orig_gen = S.generate
    S.generate = lambda bb, prompts, *a, **k: orig_gen(bb, [p.replace('olis ', '') for p in prompts], *a, **k)
from dreambooth_nb.checkpoint import load_trained
from dreambooth_nb.data import load_image, sample_subject_dir
from dreambooth_nb.load import load_backbone
from dreambooth_nb.run import demo_config, train
root = Path(tempfile.mkdtemp())
photos = [load_image(p) for p in sorted(sample_subject_dir().glob('*.jpg'))]
made = {'base': T._samples(load_backbone('micro'))}
train(demo_config(root / 'prior', class_data_dir=str(root / 'bank'), checkpointing_steps=300, validation_steps=1000))
made['prior'] = T._samples(load_trained(root / 'prior')[0])
out = {k: dict(subject=T.near_photo(m[T.SUBJECT], photos), cls=T.near_photo(m[T.CLASS], photos),
               kept=T.same_seed(m[T.CLASS], made['base'][T.CLASS])) for k, m in made.items()}
print(bug, {k: {m: round(v, 3) for m, v in s.items()} for k, s in out.items()})
for test in (T.test_the_identifier_draws_the_subject_more_than_the_base, T.test_the_identifier_is_what_draws_it, T.test_prior_preservation_keeps_the_class):
    try: test(out); print('  PASSED', test.__name__)
    except AssertionError: print('  FAILED (caught)', test.__name__)
