"""One thin module per verb (``qwenft VERB``), each the body of ``conf/<verb>.yaml``: compose -> instantiate ->
call the library. The library (everything outside this package and ``qwenft.cli``) never imports them."""
