"""video-warehouse manifests: worker environments and cluster definitions for the stages."""
