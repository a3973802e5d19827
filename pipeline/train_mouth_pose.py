"""DVC stage `train_mouth_pose`: mouth-pose decoupling (paper §3.2, Eqs. 3-7): only MLN and PLN train.

See pipeline/train_edtalk.py for what the flow reads and writes.
"""

from pipeline.train_edtalk import main, make_flow

train_mouth_pose = make_flow("mouth_pose")

if __name__ == "__main__":
    main(train_mouth_pose, __doc__.splitlines()[0])
