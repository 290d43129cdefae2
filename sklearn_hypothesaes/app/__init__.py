"""What a user runs: :func:`run_method` (the whole method as one fitted
Pipeline), the ``sklearn-hypothesaes`` command line, the HTML report and the
matplotlib plots. Everything here sits on top of the other subpackages."""
