"""The one home of every fact the pack shares: the HyperLoRA v1 release, its inputs, and the files
it reads. Plain values only (no torch), so every module and the nodes can import it cheaply."""

# The prompt must start with these words or the generated LoRA has little effect.
TRIGGER_WORDS = "fcsks fxhks fhyks, "

# The command line, as its messages name it (`hyperlora-studio` is the same program).
CLI = "python -m hyperlora_core"

HF_REPO_ID = "bytedance-research/HyperLoRA"
HF_URL = "https://huggingface.co/bytedance-research/HyperLoRA"
VARIANTS = ("sdxl_hyper_id_lora_v1_fidelity", "sdxl_hyper_id_lora_v1_edit")

MODULES_JSON = "hyper_lora_modules.json"
MODULES_WEIGHTS = "hyper_lora_modules.safetensors"
RESAMPLER_WEIGHTS = "resampler.safetensors"
ID_PROJECTOR_WEIGHTS = "id_projector.safetensors"
BASE_RESAMPLER_WEIGHTS = "base_resampler.safetensors"
RELEASE_FILES = (MODULES_JSON, MODULES_WEIGHTS, RESAMPLER_WEIGHTS, ID_PROJECTOR_WEIGHTS)

# Attention projections of a module, in the order of the resampler's token groups, and the
# suffix each one gets in the kohya LoRA key.
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")
KOHYA_SUFFIX = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out_0"}
TOKENS_PER_MODULE = 2 * len(PROJECTIONS)

ARCFACE_DIM = 512
CLIP_TOKENS = 257
CLIP_WIDTH = 1024

# OpenAI CLIP ViT-L/14 preprocessing.
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ANTELOPEV2_FILES = {
    "detection": "scrfd_10g_bnkps.onnx",
    "landmark_2d_106": "2d106det.onnx",
    "recognition": "glintr100.onnx",
}
ANTELOPEV2_URL = "https://github.com/deepinsight/insightface/tree/master/python-package#model-zoo (antelopev2)"

CLIP_URL = "https://huggingface.co/openai/clip-vit-large-patch14"

# Photos the command line and the trainer read from a folder (lower-case suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
