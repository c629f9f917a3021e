"""The block library shipped with tcc (blocks/*.yaml): package data, found through tcc.resources."""
