"""`tcc explain`: Grad-CAM heat maps and t-SNE plots of a model's features (the DDSNet paper's section 4.5).

    from tcc.explain.gradcam import explain_image     # Grad-CAM of one image file at a layer, for a class
    from tcc.explain.tsne import embed_folder         # t-SNE of a folder's penultimate features
    from tcc.explain.layers import LayerIndex         # layers by `tcc check` name -> fx nodes; the defaults

Modules: layers (which layer, read off the IR), capture (an fx Interpreter that keeps values), gradcam, tsne,
plot (the two figures), cli (the subcommand). Kept free of heavy imports: the CLI's parser imports this package.
"""
