# Stage 3 at toy scale on the CPU with the Wan FLF2V plugin: the CogVideoX tiny distillation config
# with its backbone swapped for the tiny Wan teacher exported from tiny_wan_flf2v_teacher.py:
#   python tools/export_teacher.py projects/wan_flf2v/configs/tiny_wan_flf2v_teacher.py \
#       work_dirs/teacher_tiny_wan_flf2v/iter_300.pth --out work_dirs/tiny_wan_flf2v_teacher
# (and stage 1 as in configs/distillation/tiny_cogvideox_synthetic.py), then
#   python tools/train.py projects/wan_flf2v/configs/tiny_wan_flf2v_distillation.py
_base_ = ['../../../configs/distillation/tiny_cogvideox_synthetic.py']
custom_imports = dict(imports=['projects.wan_flf2v'], allow_failed_imports=False)

work_dir = 'work_dirs/tiny_wan_flf2v_distillation'
teacher = 'work_dirs/tiny_wan_flf2v_teacher'
model = dict(backbone=dict(_delete_=True, type='WanFLF2V', pretrained=teacher,
                           prompt_embedding=teacher + '/prompt_embeds.safetensors'),
             augment_conditions=False)
