"""`tcc slide`: FastNet's tumour-fast-identification pipeline over whole images and slides."""
