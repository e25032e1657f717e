# Stage 2 (teacher) at toy scale on the CPU with the Wan FLF2V plugin: the CogVideoX tiny teacher
# config with its backbone swapped for a tiny random Wan 2.1 FLF2V (9-frame 32 x 32 videos).
# Build the model folder once:
#   python -m projects.wan_flf2v.tiny --out work_dirs/tiny_wan_flf2v
# then: python tools/train.py projects/wan_flf2v/configs/tiny_wan_flf2v_teacher.py
_base_ = ['../../../configs/teacher/tiny_cogvideox_synthetic.py']
custom_imports = dict(imports=['projects.wan_flf2v'], allow_failed_imports=False)

work_dir = 'work_dirs/teacher_tiny_wan_flf2v'
tiny_model = 'work_dirs/tiny_wan_flf2v'
model = dict(backbone=dict(_delete_=True, type='WanFLF2V', pretrained=tiny_model,
                           prompt_embedding=tiny_model + '/prompt_embeds.safetensors'),
             # Wan is trained without noise on its condition frames (WanFLF2V refuses augment)
             augment_conditions=False)
