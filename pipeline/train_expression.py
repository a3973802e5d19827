"""DVC stage `train_expression`: expression decoupling (paper §3.2, Eqs. 8-10): only ELN and EEM train.

See pipeline/train_edtalk.py for what the flow reads and writes.
"""

from pipeline.train_edtalk import main, make_flow

train_expression = make_flow("expression")

if __name__ == "__main__":
    main(train_expression, __doc__.splitlines()[0])
