"""DVC stage `train_autoencoder`: E, G (+D), trunk, MLN, PLN reconstruct a driving frame from an identity frame (the base the paper takes pretrained).

See pipeline/train_edtalk.py for what the flow reads and writes.
"""

from pipeline.train_edtalk import main, make_flow

train_autoencoder = make_flow("autoencoder")

if __name__ == "__main__":
    main(train_autoencoder, __doc__.splitlines()[0])
